import {
  BadRequestException,
  CanActivate,
  createParamDecorator,
  ExecutionContext,
  Inject,
  Injectable,
  SetMetadata,
  type Provider,
} from '@nestjs/common';
import { PATH_METADATA } from '@nestjs/common/constants';
import { APP_GUARD, Reflector } from '@nestjs/core';
import type { Request } from 'express';
import type { Config } from '@velocity/contracts';
import type { Logger } from '@velocity/runtime';
import { ApiException } from '../common/api-exception';
import { ACCEPTED_QUERY } from '../openapi/api-endpoint';
import { authSettingsOf, type AuthSettings } from './auth-settings';
import { LOCAL_USER, type AuthUser } from './auth-user';
import { TokenError, TokenVerifier } from './token-verifier';

export const AUTH_SETTINGS = Symbol('AUTH_SETTINGS');
const REQUIRE_USER = 'velocity:require-user';

/** Marks a controller or handler as acting for a user; /v1/sessions* and /v1/projects* always do. */
export const RequireUser = () => SetMetadata(REQUIRE_USER, true);

/** Routes that act for a user, by their declared path (not the request's, so Express's case-insensitive routing cannot dodge it). */
const USER_CONTROLLER_PATH = /^\/v1\/(sessions|projects)(\/|$)/i;

type UserRequest = Request & { user?: AuthUser };

/** The bearer token of an Authorization header; the scheme is case-insensitive (RFC 7235). */
const BEARER = /^bearer +([^\s]+) *$/i;

/** Who a request is: the local user with auth off; else the verified Supabase access token's user. */
@Injectable()
export class Authenticator {
  private readonly verifier: TokenVerifier | null;

  constructor(@Inject(AUTH_SETTINGS) readonly settings: AuthSettings) {
    this.verifier = settings.mode === 'jwt' ? new TokenVerifier(settings) : null;
  }

  async userOf(authorization: string | undefined): Promise<AuthUser> {
    if (!this.verifier) return LOCAL_USER;
    if (authorization === undefined || authorization.trim() === '') {
      throw unauthorized('a bearer token is required (Authorization: Bearer <Supabase access token>)', false);
    }
    const token = BEARER.exec(authorization)?.[1];
    if (!token) throw unauthorized('must be "Bearer <Supabase access token>"');
    try {
      return await this.verifier.verify(token);
    } catch (err) {
      if (err instanceof TokenError && err.status === 503) {
        throw new ApiException(
          { statusCode: 503, error: 'Service Unavailable', message: `authorization: ${err.message}`, field: 'authorization' },
          { 'retry-after': '5' },
        );
      }
      throw unauthorized(err instanceof TokenError ? err.message : 'the token is not valid');
    }
  }
}

function unauthorized(reason: string, invalidToken = true): ApiException {
  return new ApiException(
    { statusCode: 401, error: 'Unauthorized', message: `authorization: ${reason}`, field: 'authorization' },
    { 'www-authenticate': invalidToken ? 'Bearer realm="velocity-preview", error="invalid_token"' : 'Bearer realm="velocity-preview"' },
  );
}

/**
 * Global guard: every route of a /v1/sessions or /v1/projects controller (or one
 * marked @RequireUser()) needs a user, put on the request for @CurrentUser(). Those
 * routes take only the query parameters their ApiEndpoint declares: any other is refused naming it. Machine routes keep
 * their machine tokens, previews (their own origins) never reach Nest, /health stays open.
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(
    private readonly auth: Authenticator,
    private readonly reflector: Reflector,
  ) {}

  async canActivate(context: ExecutionContext): Promise<boolean> {
    if (context.getType() !== 'http' || !this.requiresUser(context)) return true;
    const req = context.switchToHttp().getRequest<UserRequest>();
    req.user = await this.auth.userOf(req.headers.authorization);
    const accepted = this.reflector.get<string[] | undefined>(ACCEPTED_QUERY, context.getHandler()) ?? [];
    const unknown = Object.keys(req.query ?? {}).find((name) => !accepted.includes(name));
    if (unknown !== undefined) {
      const name = unknown.slice(0, 64);
      throw new BadRequestException({ statusCode: 400, error: 'Bad Request', message: `query.${name}: unknown query parameter`, field: `query.${name}` });
    }
    return true;
  }

  private requiresUser(context: ExecutionContext): boolean {
    if (this.reflector.getAllAndOverride<boolean>(REQUIRE_USER, [context.getHandler(), context.getClass()])) return true;
    // The route's declared path, controller prefix and handler path joined: `@Controller() @Get('v1/sessions/x')` counts too.
    const pathsOf = (target: object) => ([] as unknown[]).concat(Reflect.getMetadata(PATH_METADATA, target) ?? '').filter((p): p is string => typeof p === 'string');
    return pathsOf(context.getClass()).some((prefix) =>
      pathsOf(context.getHandler()).some((path) => USER_CONTROLLER_PATH.test(`/${prefix}/${path}`.replace(/\/+/g, '/'))),
    );
  }
}

/** The user a guarded request acts for. */
export const CurrentUser = createParamDecorator((_data: unknown, context: ExecutionContext): AuthUser => {
  const user = context.switchToHttp().getRequest<UserRequest>().user;
  if (!user) throw new Error('@CurrentUser() on a route the AuthGuard does not cover');
  return user;
});

/**
 * The auth providers of the api module. Decides the mode now, so a production
 * deployment without SUPABASE_JWT_SECRET / SUPABASE_JWKS_URL stops at start with a
 * ConfigError naming the variable; with auth off it says so once.
 */
export function authProviders(config: Config, logger: Logger): Provider[] {
  const settings = authSettingsOf(config);
  if (settings.mode === 'off') {
    logger.warn('auth is off: neither SUPABASE_JWT_SECRET nor SUPABASE_JWKS_URL is set, so every request acts as one local user who owns everything, without quotas or rate limits (refused when NODE_ENV=production)', {
      localUserId: LOCAL_USER.id,
    });
  } else {
    logger.info('auth: Supabase JWTs', { hs256: Boolean(settings.secret), jwks: settings.jwksUrl ?? null, audience: settings.audience });
  }
  return [{ provide: AUTH_SETTINGS, useValue: settings }, Authenticator, { provide: APP_GUARD, useClass: AuthGuard }];
}

/** For the error filter and logs: the user of a request, when the guard found one. */
export const userOfRequest = (req: Request): AuthUser | undefined => (req as UserRequest).user;

import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import type { Config, Logger, SessionStore } from '@velocity/shared';
import { AppModule } from './app.module';
import { jsonBody } from './common/json-body';
import { createEdge } from './edge/edge';
import { SessionRoutes } from './edge/session-routes';
import { SESSION_STORE } from './tokens';

/**
 * Builds the api: the local edge first (preview paths never reach Nest or its
 * body parser), then the JSON body parser, then Nest's routes.
 */
export async function createApi(config: Config, logger: Logger): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, logger), {
    bodyParser: false,
    logger: ['error', 'warn'],
  });
  const edge = createEdge(new SessionRoutes(app.get<SessionStore>(SESSION_STORE)), logger);
  app.use(edge.middleware);
  app.use(...jsonBody('1mb'));
  app.enableShutdownHooks();
  (app.getHttpServer() as Server).on('upgrade', edge.upgrade);
  return app;
}

import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import { operatorAuth } from '@velocity/ops';
import { previewDomainOf, previewOriginOf, type Config } from '@velocity/contracts';
import { pinoOf, type Logger } from '@velocity/runtime';
import { AppModule } from './app.module';
import { BULL_BOARD_ROUTE } from './admin/admin.module';
import { NestLogger } from './common/nest-logger';
import { requestContext } from './common/request-context';
import { requestLogging } from './common/request-logging';
import { ApiMetrics } from './metrics/api-metrics';
import { jsonBody } from './common/json-body';
import { answerClientError } from './common/client-error';
import { createEdge, putEdgeInFront } from './edge/edge';
import { SessionRoutes } from './edge/session-routes';
import { previewPage } from './page/preview-page';
import { setupOpenApi } from './openapi/document';

/**
 * Builds the api: the local edge first, on the HTTP server itself (preview
 * origins never reach Express, Nest or its body parser); then, for the api's
 * own origin, the request context and line, the preview page and the OpenAPI
 * docs, then the JSON body parser, then Nest's routes.
 */
export async function createApi(config: Config, logger: Logger): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, logger), {
    bodyParser: false,
    // Nest's lines from its start on wait for its logger, nestjs-pino's on the api's pino (start-up chatter at debug).
    bufferLogs: true,
  });
  app.useLogger(app.get(NestLogger));
  const observeRequest = app.get(ApiMetrics).observeRequest;
  // Previews on the server itself, ahead of Express: a preview's origin serves nothing of the api (not even the
  // operator surfaces), and its requests cost none of the api's middleware.
  const edge = createEdge(app.get(SessionRoutes), logger, {
    previewDomain: previewDomainOf(config),
    previewOriginOf: (routeId) => previewOriginOf(config, routeId),
    servesPreviews: config.MACHINE_PROVIDER !== 'fly',
    observe: observeRequest,
  });
  putEdgeInFront(app.getHttpServer() as Server, edge);
  // First on the api's origin: every request gets its id and its request line.
  app.use(requestContext(observeRequest));
  app.use(requestLogging(pinoOf(logger)));
  // Old `/p/<routeId>/` preview links.
  app.use(edge.legacyLinks);
  // Operator surfaces: guarded before the body parser, so no one else's body is ever parsed there.
  app.use([BULL_BOARD_ROUTE, '/metrics'], operatorAuth(config));
  // The preview page at `/` (static files): before the body parser, which it never needs.
  app.use(previewPage());
  // The OpenAPI UI at /docs and document at /docs-json (public; plain Express routes, ahead of the body parser and Nest's routes).
  setupOpenApi(app);
  // Room for the largest file a PUT may carry, JSON-escaped (or base64); a raw body is the file itself.
  // JSON escapes and base64 make a body up to about 1.5 times the bytes it carries.
  const jsonLimitFor = (bytes: number) => `${Math.ceil(bytes * 1.5) + 64 * 1024}b`;
  app.use(...jsonBody({ fileLimit: jsonLimitFor(config.MAX_FILE_BYTES), rawFileLimit: config.MAX_FILE_BYTES, changeLimit: jsonLimitFor(config.MAX_PROJECT_BYTES) }));
  app.enableShutdownHooks();
  // Requests Node's parser refuses (oversized headers or URL, invalid bytes) get a JSON error too.
  (app.getHttpServer() as Server).on('clientError', answerClientError);
  return app;
}

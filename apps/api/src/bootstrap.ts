import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Server } from 'node:http';
import type { Config, Logger } from '@velocity/shared';
import { AppModule } from './app.module';
import { jsonBody } from './common/json-body';
import { createEdge } from './edge/edge';
import { SessionRoutes } from './edge/session-routes';

/**
 * Builds the api: the local edge first (preview paths never reach Nest or its
 * body parser), then the JSON body parser, then Nest's routes.
 */
export async function createApi(config: Config, logger: Logger): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config, logger), {
    bodyParser: false,
    logger: ['error', 'warn'],
  });
  const edge = createEdge(app.get(SessionRoutes), logger);
  app.use(edge.middleware);
  // Room for the largest file a PUT may carry, JSON-escaped.
  app.use(...jsonBody(`${Math.ceil(config.MAX_FILE_BYTES * 1.5) + 64 * 1024}b`));
  app.enableShutdownHooks();
  (app.getHttpServer() as Server).on('upgrade', edge.upgrade);
  return app;
}

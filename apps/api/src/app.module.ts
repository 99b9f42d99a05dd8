import { BullModule } from '@nestjs/bullmq';
import { DynamicModule, Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type Redis from 'ioredis';
import { ALL_QUEUES, FileChangeLog, type Config } from '@velocity/contracts';
import { EventLog, StreamWatcher, WithdrawnRequests, createRequestRedis, redisReady, requestRedisOptions } from '@velocity/ops';
import { createSessionStore, type SessionStore } from '@velocity/session-store';
import { pinoOf, type Logger } from '@velocity/runtime';
import { LoggerModule } from 'nestjs-pino';
import { AdminModule } from './admin/admin.module';
import { ErrorFilter } from './common/error.filter';
import { NestLogger } from './common/nest-logger';
import { MetricsModule } from './metrics/metrics.module';
import { RoutesController } from './edge/routes.controller';
import { SessionRoutes } from './edge/session-routes';
import { GoneSessions } from './common/gone-sessions';
import { HealthController } from './health.controller';
import { MachineFilesController } from './machines/machine-files.controller';
import { MachineActivityController } from './machines/machine-activity.controller';
import { MachineDiagnosticsController } from './machines/machine-diagnostics.controller';
import { MachineAccess } from './machines/machine-access';
import { FileChangesController } from './machines/file-changes.controller';
import { MachineSocket } from './machines/machine-socket';
import { ProjectsController } from './projects/projects.controller';
import { ProjectsService } from './projects/projects.service';
import { SessionsController } from './sessions/sessions.controller';
import { SessionsService } from './sessions/sessions.service';
import { SessionBuildStates } from './sessions/session-build-state';
import { authProviders } from './auth/auth.guard';
import { SessionQuotas } from './sessions/session-quotas';
import { StreamLeases } from './sessions/stream-leases';
import { CONFIG, EVENT_LOG, LOGGER, STREAM_WATCHER, REDIS, SESSION_STORE } from './tokens';

/** Closes what the module opened when the app shuts down. */
class Resources implements OnApplicationShutdown {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(STREAM_WATCHER) private readonly watcher: StreamWatcher,
    @Inject(SESSION_STORE) private readonly store: SessionStore,
  ) {}

  async onApplicationShutdown() {
    await this.store.close();
    await this.watcher.close();
    this.redis.disconnect();
  }
}

const CONTROLLERS = [RoutesController, ProjectsController, FileChangesController, SessionsController, MachineFilesController, MachineActivityController, MachineDiagnosticsController, HealthController];

@Module({})
export class AppModule {
  static forRoot(config: Config, logger: Logger): DynamicModule {
    return {
      module: AppModule,
      imports: [
        // nestjs-pino on the api's pino; pino-http is mounted ahead of Nest (bootstrap.ts), so Nest reuses its req.log.
        // Bound on the controllers' routes only: a catch-all route would decode every path, and answer a path that is
        // not valid percent-encoding with 400 where no route means 404.
        LoggerModule.forRootAsync({
          useFactory: () => ({ pinoHttp: { logger: pinoOf(logger) }, useExisting: true, forRoutes: CONTROLLERS }),
        }),
        // The api only adds and reads jobs (no workers): its queues fail fast like its other Redis commands.
        BullModule.forRoot({ connection: { url: config.REDIS_URL, ...requestRedisOptions(config.REDIS_COMMAND_TIMEOUT_MS) }, prefix: config.QUEUE_PREFIX }),
        // Every queue of the system: the services use theirs, Bull Board and /metrics show them all.
        ...ALL_QUEUES.map((name) => BullModule.registerQueue({ name })),
        AdminModule.forRoot(config),
        MetricsModule.forRoot(config),
      ],
      controllers: CONTROLLERS,
      providers: [
        { provide: CONFIG, useValue: config },
        { provide: LOGGER, useValue: logger },
        NestLogger,
        // Ready before the api listens: with no offline queue, a command sent before then would fail.
        { provide: REDIS, useFactory: () => redisReady(createRequestRedis(config.REDIS_URL, config.REDIS_COMMAND_TIMEOUT_MS), 30_000) },
        // 20 entries a read: a file change may be up to a megabyte.
        { provide: STREAM_WATCHER, inject: [REDIS], useFactory: (redis: Redis) => new StreamWatcher(redis, { count: 20 }) },
        { provide: SESSION_STORE, useFactory: () => createSessionStore(config) },
        {
          provide: EVENT_LOG,
          inject: [REDIS],
          useFactory: (redis: Redis) => new EventLog(redis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS),
        },
        { provide: APP_FILTER, useClass: ErrorFilter },
        // Supabase JWT auth (a global guard for /v1/sessions* and /v1/projects*), per-user quotas.
        ...authProviders(config, logger),
        SessionQuotas,
        StreamLeases,
        { provide: WithdrawnRequests, inject: [REDIS], useFactory: (redis: Redis) => new WithdrawnRequests(redis, config.QUEUE_PREFIX) },
        SessionsService,
        SessionBuildStates,
        GoneSessions,
        SessionRoutes,
        MachineAccess,
        MachineSocket,
        {
          provide: FileChangeLog,
          inject: [REDIS],
          useFactory: (redis: Redis) => new FileChangeLog(redis, config.QUEUE_PREFIX, config.EVENT_STREAM_TTL_SECONDS),
        },
        ProjectsService,
        Resources,
      ],
    };
  }
}

import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { BullBoardModule } from '@bull-board/nestjs';
import { Module, type DynamicModule } from '@nestjs/common';
import { ALL_QUEUES, type Config } from '@velocity/contracts';
import { operatorAuth } from '@velocity/ops';

/** Where Bull Board answers (and where bootstrap puts the operator guard, ahead of the edge and the body parser). */
export const BULL_BOARD_ROUTE = '/admin/queues';

/**
 * Bull Board at /admin/queues: every queue of the system (ALL_QUEUES), as the
 * api's BullMQ queues, so under QUEUE_PREFIX. Behind the operator guard; off
 * (404) when no operator credentials are configured.
 */
@Module({})
export class AdminModule {
  static forRoot(config: Config): DynamicModule {
    return {
      module: AdminModule,
      imports: [
        BullBoardModule.forRoot({
          route: BULL_BOARD_ROUTE,
          adapter: ExpressAdapter,
          middleware: operatorAuth(config),
          boardOptions: { uiConfig: { boardTitle: `Velocity Preview · ${config.QUEUE_PREFIX}` } },
        }),
        BullBoardModule.forFeature(
          ...ALL_QUEUES.map((name) => ({ name, adapter: BullMQAdapter, options: { description: `Redis keys ${config.QUEUE_PREFIX}:${name}:*` } })),
        ),
      ],
    };
  }
}

import { Inject, Module, type DynamicModule, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { operatorAuth } from '@velocity/ops';
import { type Config } from '@velocity/contracts';
import { ApiMetrics } from './api-metrics';
import { MetricsController } from './metrics.controller';

const OPERATOR_GUARD = Symbol('OPERATOR_GUARD');

/**
 * /metrics of the api, behind the operator guard. Bootstrap also puts the guard
 * ahead of the edge and the body parser; this one keeps the route guarded
 * however the app is put together.
 */
@Module({})
export class MetricsModule implements NestModule {
  constructor(@Inject(OPERATOR_GUARD) private readonly guard: ReturnType<typeof operatorAuth>) {}

  static forRoot(config: Config): DynamicModule {
    return {
      module: MetricsModule,
      controllers: [MetricsController],
      providers: [ApiMetrics, { provide: OPERATOR_GUARD, useValue: operatorAuth(config) }],
      exports: [ApiMetrics],
    };
  }

  configure(consumer: MiddlewareConsumer) {
    consumer.apply(this.guard).forRoutes(MetricsController);
  }
}

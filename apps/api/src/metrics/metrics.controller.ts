import { Controller, Get, Header, Res } from '@nestjs/common';
import type { Response } from 'express';
import { ApiMetrics } from './api-metrics';

/**
 * GET /metrics (Prometheus text format). The operator guard stands in front of
 * it in bootstrap (and in MetricsModule for any other mounting): 404 without
 * operator credentials configured, 401 without the right ones.
 */
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: ApiMetrics) {}

  @Get()
  @Header('cache-control', 'no-store')
  async scrape(@Res() res: Response) {
    const text = await this.metrics.registry.metrics();
    res.setHeader('content-type', this.metrics.registry.contentType);
    res.send(text);
  }
}

import { Controller, Get, Header, Res } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import type { Response } from 'express';
import { ApiMetrics } from './api-metrics';
import { ApiEndpoint } from '../openapi/api-endpoint';

/**
 * GET /metrics (Prometheus text format). The operator guard stands in front of
 * it in bootstrap (and in MetricsModule for any other mounting): 404 without
 * operator credentials configured, 401 without the right ones.
 */
@ApiTags('operations')
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: ApiMetrics) {}

  @Get()
  @Header('cache-control', 'no-store')
  @ApiEndpoint({
    summary: 'Prometheus metrics of the api',
    description: '`vp_queue_jobs{queue,state}`, `vp_sessions{status}`, `vp_http_request_seconds{method,route,status}` and process metrics.',
    auth: 'operator',
    ok: {
      200: {
        description: 'The Prometheus text exposition format',
        content: { 'text/plain; version=0.0.4; charset=utf-8': { schema: { type: 'string' } } },
      },
    },
  })
  async scrape(@Res() res: Response) {
    const text = await this.metrics.registry.metrics();
    res.setHeader('content-type', this.metrics.registry.contentType);
    res.send(text);
  }
}

import { BadRequestException } from '@nestjs/common';
import { z } from 'zod';
import { parseOr400 } from './validation';

describe('parseOr400', () => {
  const schema = z.object({ projectId: z.string().uuid(), nested: z.object({ n: z.number() }).optional() }).strict();

  it('returns the parsed value', () => {
    const id = '550e8400-e29b-41d4-a716-446655440000';
    expect(parseOr400(schema, { projectId: id })).toEqual({ projectId: id });
  });

  it.each([
    [{ projectId: 'nope' }, 'projectId'],
    [{}, 'projectId'],
    [{ projectId: '550e8400-e29b-41d4-a716-446655440000', nested: { n: 'x' } }, 'nested.n'],
    [{ projectId: '550e8400-e29b-41d4-a716-446655440000', extra: 1 }, 'extra'],
  ])('answers 400 naming the field for %j', (input, field) => {
    try {
      parseOr400(schema, input);
      throw new Error('expected a 400');
    } catch (err) {
      expect(err).toBeInstanceOf(BadRequestException);
      const body = (err as BadRequestException).getResponse() as { field: string; message: string; statusCode: number };
      expect(body.statusCode).toBe(400);
      expect(body.field).toBe(field);
      expect(body.message.startsWith(`${field}: `)).toBe(true);
    }
  });

  it('names the parameter when the input itself is wrong', () => {
    expect(() => parseOr400(z.string().uuid(), 'x', 'id')).toThrow(/^id: /);
  });
});

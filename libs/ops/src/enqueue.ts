import type { Queue } from 'bullmq';
import { JOBS, parseJob, type QueuedJob } from '@velocity/contracts';

/**
 * Adds a job (built by `jobs` of @velocity/contracts, with its options) to its
 * queue: the one way the system enqueues. The payload is checked against the
 * job's schema first (a ZodError naming the field), so a worker never meets a
 * payload its producer could have refused; a job sent to another job's queue
 * is refused too.
 */
export async function enqueue(queue: Pick<Queue, 'name' | 'add'>, job: QueuedJob): ReturnType<Queue['add']> {
  const own = JOBS[job.name].queue;
  if (queue.name !== own) throw new Error(`${job.name} jobs go to the ${own} queue, not ${queue.name}`);
  return queue.add(job.name, parseJob(job.name, job.data), job.opts);
}

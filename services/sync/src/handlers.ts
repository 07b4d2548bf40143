import { implement, since24h, type BaseConfig, type ServiceRuntime } from '@ptw/common';
import type { Models } from '@ptw/db';
import { syncPb } from '@ptw/proto';


/** gRPC handlers of the sync service; the ones a later issue brings answer UNIMPLEMENTED. */
export function syncHandlers(models: Models, rt: ServiceRuntime<BaseConfig>) {
  return implement(
    syncPb.SyncServiceService,
    {
      getSyncStats: async (req) => {
        const since = since24h(req.since);
        const count = (outcome: string) => models.SyncEvent.countDocuments({ at: { $gte: since }, outcome });
        const [applied, conflicts, rejected] = await Promise.all([count('applied'), count('conflict'), count('rejected')]);
        return { applied, conflicts, rejected };
      },
    },
    rt,
  );
}

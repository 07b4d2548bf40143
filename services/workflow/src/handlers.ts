import { implement, type ServiceRuntime, type BaseConfig } from '@ptw/common';
import type { Models } from '@ptw/db';
import { workflowPb } from '@ptw/proto';

/** gRPC handlers of the workflow service; the ones a later issue brings answer UNIMPLEMENTED. */
export function workflowHandlers(models: Models, rt: ServiceRuntime<BaseConfig>) {
  return implement(
    workflowPb.WorkflowServiceService,
    {
      listPermitTypes: async () => {
        const types = await models.PermitType.find({ active: true }).sort({ name: 1 }).lean();
        return {
          results: types.map((t) => ({
            id: String(t._id),
            name: t.name,
            category: t.category,
            risk_level: t.risk_level,
            validity_hours: t.validity_hours,
            escalation_hours: t.escalation_hours,
            requires_isolation: t.requires_isolation,
            closeout_items: t.closeout_items.map((i) => ({ key: i.key ?? '', label: i.label ?? '', required: !!i.required })),
          })),
        };
      },
    },
    rt,
  );
}

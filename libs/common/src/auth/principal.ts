export const ROLES = ['worker', 'supervisor', 'manager', 'service'] as const;
export type Role = (typeof ROLES)[number];

/** Who is calling: the verified claims of a bearer token. */
export interface Principal {
  user_id: string;
  role: Role;
  project_ids: string[];
}

const RANK: Record<Role, number> = { worker: 0, supervisor: 1, manager: 2, service: 3 };

/** True when `p` has at least the rights of `role` (SPEC §2 roles are cumulative). */
export function hasRole(p: Principal, role: Role): boolean {
  return RANK[p.role] >= RANK[role];
}

/** The manage capability of SPEC §2: health, job runs, throttle status. */
export function canManage(p: Principal): boolean {
  return hasRole(p, 'manager');
}

/** True when the caller may see data of `projectId` (service tokens act on any project). */
export function inScope(p: Principal, projectId: string): boolean {
  return p.role === 'service' || p.project_ids.includes(projectId);
}

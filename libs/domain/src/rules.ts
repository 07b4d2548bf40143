/**
 * The pure rules of SPEC §2: status machine, who may move a permit, risk, isolation order.
 * No I/O here: everything is unit-tested directly.
 */
import { hasRole, type Principal } from '@ptw/common';
import type { PermitStatus } from '@ptw/db';

export const TRANSITIONS: Readonly<Record<PermitStatus, readonly PermitStatus[]>> = {
  draft: ['submitted', 'cancelled'],
  submitted: ['under_review', 'rejected', 'draft'],
  under_review: ['approved', 'rejected', 'submitted'],
  approved: ['active', 'cancelled'],
  active: ['completed', 'suspended', 'expired'],
  suspended: ['active', 'cancelled'],
  rejected: ['draft'],
  completed: [],
  cancelled: [],
  expired: [],
};

export const TERMINAL: ReadonlySet<PermitStatus> = new Set(['completed', 'cancelled', 'expired']);

/** True when the status machine allows `from → to` at all (who may do it is {@link transitionRefusal}). */
export function isAllowedTransition(from: PermitStatus, to: PermitStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The permit facts the authorisation of a transition depends on. */
export interface TransitionSubject {
  status: PermitStatus;
  created_by: string;
  verifier_id?: string | null;
  approver_id?: string | null;
}

/**
 * Why `who` may not move `permit` to `to` (SPEC §2 "Who may move a permit"), or undefined when
 * allowed. Project scoping is checked before this. Service tokens act as the system.
 */
export function transitionRefusal(who: Principal, permit: TransitionSubject, to: PermitStatus): string | undefined {
  if (who.role === 'service') return undefined;
  const from = permit.status;
  const isCreator = permit.created_by === who.user_id;
  if (to === 'expired') return 'Only the system may expire a permit';
  if (to === 'cancelled') return isCreator || hasRole(who, 'manager') ? undefined : 'Only the creator or a manager may cancel a permit';
  if ((from === 'draft' && to === 'submitted') || (from === 'submitted' && to === 'draft') || (from === 'rejected' && to === 'draft')) {
    return isCreator ? undefined : 'Only the creator may do this';
  }
  if (from === 'submitted' && (to === 'under_review' || to === 'rejected')) {
    if (!hasRole(who, 'supervisor')) return 'Only a supervisor or manager may verify or reject a submitted permit';
    if (permit.verifier_id && permit.verifier_id !== who.user_id) return 'Only the assigned verifier may do this';
    return undefined;
  }
  if (from === 'under_review') {
    if (!hasRole(who, 'manager')) return 'Only a manager may approve, reject or return a permit under review';
    if (permit.approver_id && permit.approver_id !== who.user_id) return 'Only the assigned approver may do this';
    return undefined;
  }
  if ((from === 'approved' && to === 'active') || (from === 'active' && (to === 'suspended' || to === 'completed')) || (from === 'suspended' && to === 'active')) {
    return isCreator || hasRole(who, 'supervisor') ? undefined : 'Only the creator, a supervisor or a manager may do this';
  }
  return 'Not allowed';
}

/** The `*_at` field a transition stamps (SPEC §2). */
export const STAMPS: Partial<Record<PermitStatus, 'submitted_at' | 'verified_at' | 'approved_at'>> = {
  submitted: 'submitted_at',
  under_review: 'verified_at',
  approved: 'approved_at',
};

/** risk_score = probability × severity; level ≤4 low, ≤9 medium, ≤16 high, else extreme. */
export function risk(probability: number, severity: number): { risk_score: number; risk_level: 'low' | 'medium' | 'high' | 'extreme' } {
  const score = probability * severity;
  const level = score <= 4 ? 'low' : score <= 9 ? 'medium' : score <= 16 ? 'high' : 'extreme';
  return { risk_score: score, risk_level: level };
}

export const ISOLATION_ORDER = ['assigned', 'isolated', 'verified', 'deisolated'] as const;
export type IsolationStatus = (typeof ISOLATION_ORDER)[number];
export type IsolationAction = 'isolate' | 'verify' | 'deisolate';

/**
 * The status an isolation action moves a point to, or the reason it cannot: isolate needs
 * `assigned`, verify needs `isolated`, deisolate needs `isolated` or `verified`; nothing moves back.
 */
export function isolationStep(current: IsolationStatus, action: IsolationAction): { to: IsolationStatus } | { refusal: string } {
  const need: Record<IsolationAction, IsolationStatus[]> = {
    isolate: ['assigned'],
    verify: ['isolated'],
    deisolate: ['isolated', 'verified'],
  };
  const to: Record<IsolationAction, IsolationStatus> = { isolate: 'isolated', verify: 'verified', deisolate: 'deisolated' };
  if (need[action].includes(current)) return { to: to[action] };
  if (action === 'verify' && current === 'assigned') return { refusal: 'Isolation point must be isolated before it can be verified' };
  return { refusal: `Isolation point is already ${current}; its status never moves backwards` };
}

/** Union of two lists keeping first-seen order (the `set_merge` hint). */
export function setMerge(a: readonly string[], b: readonly string[]): string[] {
  return [...new Set([...a, ...b])];
}

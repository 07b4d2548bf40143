import type { Principal } from '@ptw/common';
import { PERMIT_STATUSES, type PermitStatus } from '@ptw/db';
import { isAllowedTransition, isolationStep, risk, setMerge, TRANSITIONS, transitionRefusal } from './rules';

const worker: Principal = { user_id: 'w', role: 'worker', project_ids: ['p1'] };
const supervisor: Principal = { user_id: 's', role: 'supervisor', project_ids: ['p1'] };
const manager: Principal = { user_id: 'm', role: 'manager', project_ids: ['p1'] };

describe('status machine', () => {
  it('when every pair of statuses is tried, then exactly the transitions of SPEC §2 are allowed', () => {
    const allowed = PERMIT_STATUSES.flatMap((f) => PERMIT_STATUSES.filter((t) => isAllowedTransition(f, t)).map((t) => `${f}>${t}`));
    expect(allowed.sort()).toEqual(
      [
        'draft>submitted',
        'draft>cancelled',
        'submitted>under_review',
        'submitted>rejected',
        'submitted>draft',
        'under_review>approved',
        'under_review>rejected',
        'under_review>submitted',
        'approved>active',
        'approved>cancelled',
        'active>completed',
        'active>suspended',
        'active>expired',
        'suspended>active',
        'suspended>cancelled',
        'rejected>draft',
      ].sort(),
    );
  });

  it('when a status is terminal, then nothing leaves it', () => {
    for (const s of ['completed', 'cancelled', 'expired'] as PermitStatus[]) expect(TRANSITIONS[s]).toEqual([]);
  });
});

describe('who may move a permit', () => {
  const permit = (status: PermitStatus, extra: object = {}) => ({ status, created_by: 'w', ...extra });

  it('when a worker or a supervisor tries to approve, then it is refused; a manager may', () => {
    expect(transitionRefusal(worker, permit('under_review'), 'approved')).toMatch(/manager/);
    expect(transitionRefusal(supervisor, permit('under_review'), 'approved')).toMatch(/manager/);
    expect(transitionRefusal(manager, permit('under_review'), 'approved')).toBeUndefined();
  });

  it('when an approver is assigned, then only that manager may approve', () => {
    expect(transitionRefusal(manager, permit('under_review', { approver_id: 'm2' }), 'approved')).toMatch(/assigned approver/);
    expect(transitionRefusal({ ...manager, user_id: 'm2' }, permit('under_review', { approver_id: 'm2' }), 'approved')).toBeUndefined();
  });

  it('when a verifier is assigned, then only that user may verify', () => {
    expect(transitionRefusal(supervisor, permit('submitted', { verifier_id: 's2' }), 'under_review')).toMatch(/assigned verifier/);
    expect(transitionRefusal(supervisor, permit('submitted'), 'under_review')).toBeUndefined();
    expect(transitionRefusal(worker, permit('submitted'), 'under_review')).toMatch(/supervisor/);
  });

  it('when someone else than the creator submits, then it is refused', () => {
    expect(transitionRefusal(manager, permit('draft'), 'submitted')).toMatch(/creator/);
    expect(transitionRefusal(worker, permit('draft'), 'submitted')).toBeUndefined();
  });

  it('when a user tries to expire a permit, then only the system may', () => {
    expect(transitionRefusal(manager, permit('active'), 'expired')).toMatch(/system/);
    expect(transitionRefusal({ user_id: 'svc', role: 'service', project_ids: [] }, permit('active'), 'expired')).toBeUndefined();
  });

  it('when a worker who did not create the permit cancels it, then it is refused; the creator may', () => {
    expect(transitionRefusal({ ...worker, user_id: 'other' }, permit('draft'), 'cancelled')).toMatch(/creator or a manager/);
    expect(transitionRefusal(worker, permit('draft'), 'cancelled')).toBeUndefined();
  });
});

describe('risk', () => {
  it.each([
    [1, 4, 4, 'low'],
    [3, 3, 9, 'medium'],
    [4, 4, 16, 'high'],
    [5, 4, 20, 'extreme'],
  ])('when p=%i s=%i, then score %i level %s', (p, s, score, level) => {
    expect(risk(p, s)).toEqual({ risk_score: score, risk_level: level });
  });
});

describe('isolation order', () => {
  it('when a point is verified before it is isolated, then it is refused', () => {
    expect(isolationStep('assigned', 'verify')).toEqual({ refusal: expect.stringMatching(/isolated before/) });
  });
  it('when a point moves forward, then it reaches the next status; backwards is refused', () => {
    expect(isolationStep('assigned', 'isolate')).toEqual({ to: 'isolated' });
    expect(isolationStep('isolated', 'verify')).toEqual({ to: 'verified' });
    expect(isolationStep('verified', 'deisolate')).toEqual({ to: 'deisolated' });
    expect(isolationStep('verified', 'isolate')).toEqual({ refusal: expect.stringMatching(/already verified/) });
    expect(isolationStep('deisolated', 'deisolate')).toHaveProperty('refusal');
  });
  it('when two lists are set-merged, then the union keeps order without duplicates', () => {
    expect(setMerge(['L1', 'L2'], ['L2', 'L3'])).toEqual(['L1', 'L2', 'L3']);
  });
});

/** The caller's own work: pending workflow steps and notifications. */
import { invalidArgument, notFound, type Principal } from '@ptw/common';
import { findEach, type Models } from '@ptw/db';
import { isValidObjectId } from 'mongoose';
import { iso } from './serialize';

/** Pending steps assigned to the caller that are due (started), in their projects. */
export async function myTasks(models: Models, who: Principal) {
  const q: Record<string, unknown> = { assignee_id: who.user_id, status: 'pending', started_at: { $ne: null } };
  if (who.role !== 'service') q.project_id = { $in: who.project_ids };
  const steps = await models.WorkflowStep.find(q).sort({ started_at: 1 }).limit(200).lean();
  const permits = await findEach<{ _id: unknown; permit_number: string; title: string }>(
    models.Permit,
    '_id',
    steps.map((s) => s.permit_id),
    { projection: { permit_number: 1, title: 1 } },
  );
  const byId = new Map(permits.map((p) => [String(p._id), p]));
  return steps.map((s) => ({
    id: String(s._id),
    permit_id: s.permit_id,
    step: s.step,
    assignee_id: s.assignee_id ?? '',
    status: s.status,
    started_at: iso(s.started_at),
    limit_hours: s.limit_hours,
    permit_number: byId.get(s.permit_id)?.permit_number ?? '',
    permit_title: byId.get(s.permit_id)?.title ?? '',
    project_id: s.project_id,
  }));
}

/* eslint-disable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument -- a lean notification document of any shape, mapped field by field to the proto Notification its callers return */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a lean notification document, mapped field by field
function toNotification(n: Record<string, any>) {
  return {
    id: String(n._id),
    user_id: n.user_id,
    type: n.type,
    title: n.title,
    message: n.message,
    data: n.data ?? {},
    read: !!n.read,
    read_at: iso(n.read_at),
    created_at: iso(n.created_at) ?? '',
  };
}
/* eslint-enable @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-argument */

/** One page of the caller's notifications, newest first. */
export async function listNotifications(models: Models, who: Principal, page: number, pageSize: number, unreadOnly: boolean) {
  if (!Number.isInteger(page) || page < 1) throw invalidArgument('page: expected an integer ≥ 1', { field: 'page' });
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100) throw invalidArgument('page_size: expected an integer from 1 to 100', { field: 'page_size' });
  const q: Record<string, unknown> = { user_id: who.user_id, ...(unreadOnly ? { read: false } : {}) };
  const [count, docs] = await Promise.all([
    models.Notification.countDocuments(q),
    models.Notification.find(q)
      .sort({ created_at: -1, _id: -1 })
      .skip((page - 1) * pageSize)
      .limit(pageSize)
      .lean(),
  ]);
  return { count, results: docs.map(toNotification) };
}

export async function unreadCount(models: Models, who: Principal) {
  return { count: await models.Notification.countDocuments({ user_id: who.user_id, read: false }) };
}

/** Marks one of the caller's notifications read; anyone else's is NOT_FOUND. */
export async function markRead(models: Models, who: Principal, id: string, now = new Date()) {
  if (!isValidObjectId(id) || !/^[0-9a-f]{24}$/i.test(id)) throw notFound('Notification not found');
  const doc = await models.Notification.findOne({ _id: id, user_id: who.user_id }).lean();
  if (!doc) throw notFound('Notification not found');
  if (doc.read) return toNotification(doc);
  const updated = await models.Notification.findOneAndUpdate({ _id: id, user_id: who.user_id }, { $set: { read: true, read_at: now } }, { new: true }).lean();
  return toNotification(updated ?? doc);
}

export async function markAllRead(models: Models, who: Principal, now = new Date()) {
  const r = await models.Notification.updateMany({ user_id: who.user_id, read: false }, { $set: { read: true, read_at: now } });
  return { updated: r.modifiedCount };
}

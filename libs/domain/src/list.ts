/** Permit lists' order: newest first, `_id` breaking ties (filtered lists, and several projects' heads merged). */
export const NEWEST_FIRST = { created_at: -1, _id: -1 } as const;

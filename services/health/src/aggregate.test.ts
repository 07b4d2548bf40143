import { hourBuckets } from './aggregate';

const zero = { applied: 0, conflicts: 0, rejected: 0, bulk_exports: 0 };

describe('hourBuckets', () => {
  const now = Date.parse('2026-03-01T12:30:00.000Z');

  it('when the windows since 1, 2 and 3 hours ago hold 2, 5 and 5 events, then the hours hold 0, 3 and 2, oldest first', () => {
    const hours = hourBuckets(
      [
        { ...zero, applied: 2, bulk_exports: 1 },
        { ...zero, applied: 5, bulk_exports: 1 },
        { ...zero, applied: 5, bulk_exports: 4 },
      ],
      now,
    );
    expect(hours.map((h) => h.start)).toEqual(['2026-03-01T09:30:00.000Z', '2026-03-01T10:30:00.000Z', '2026-03-01T11:30:00.000Z']);
    expect(hours.map((h) => h.applied)).toEqual([0, 3, 2]);
    expect(hours.map((h) => h.bulk_exports)).toEqual([3, 0, 1]);
  });

  it('when an event lands between two counts and a wider window reads less, then that hour reads 0, not a negative count', () => {
    const hours = hourBuckets(
      [
        { ...zero, conflicts: 3 },
        { ...zero, conflicts: 2 },
      ],
      now,
    );
    expect(hours.map((h) => h.conflicts)).toEqual([0, 3]);
  });
});

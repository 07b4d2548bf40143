import { exportFilename, isoDate, personLabel } from './format';

describe('exportFilename', () => {
  const now = new Date(Date.UTC(2025, 0, 9, 7, 5, 3));

  it('when the export is PDF, then the name is permits_bulk_<UTC stamp>.zip', () => {
    expect(exportFilename('pdf', now)).toBe('permits_bulk_20250109_070503.zip');
  });

  it('when the export is Excel, then the name is permits_bulk_<UTC stamp>.xlsx', () => {
    expect(exportFilename('excel', now)).toBe('permits_bulk_20250109_070503.xlsx');
  });

  it('when the local day differs from the UTC day, then the UTC day is used', () => {
    expect(exportFilename('pdf', new Date('2025-12-31T23:59:59-05:00'))).toBe('permits_bulk_20260101_045959.zip');
  });
});

describe('isoDate', () => {
  it('when given a date, then it is ISO 8601 UTC to the second', () => {
    expect(isoDate(new Date('2025-03-01T10:00:00.789+02:00'))).toBe('2025-03-01T08:00:00Z');
  });

  it('when the date is missing or invalid, then it is empty', () => {
    expect(isoDate(undefined)).toBe('');
    expect(isoDate(null)).toBe('');
    expect(isoDate(new Date('nope'))).toBe('');
  });
});

describe('personLabel', () => {
  it('when the name is known, then it is shown with the id; else the bare id', () => {
    const p = { user_names: { u1: 'Ann' } };
    expect(personLabel(p, 'u1')).toBe('Ann (u1)');
    expect(personLabel(p, 'u2')).toBe('u2');
    expect(personLabel(p, undefined)).toBe('');
  });
});

import { isolationSummary } from './isolation';

const point = (status: string, required = true) => ({ status, required });

describe('isolation summary (SPEC §4)', () => {
  it('when the only required point is not isolated yet, then one point is pending verification', () => {
    expect(isolationSummary([point('assigned')])).toEqual({ total: 1, required: 1, verified: 0, deisolated: 0, pending_verification: 1 });
  });

  it('when there are no points, then every figure is zero', () => {
    expect(isolationSummary([])).toEqual({ total: 0, required: 0, verified: 0, deisolated: 0, pending_verification: 0 });
  });

  it('when required points are in every status, then pending is required minus verified', () => {
    const s = isolationSummary([point('assigned'), point('isolated'), point('verified'), point('verified'), point('deisolated')]);
    expect(s).toEqual({ total: 5, required: 5, verified: 2, deisolated: 1, pending_verification: 3 });
  });

  it('when optional points are verified or de-isolated, then only total counts them', () => {
    const s = isolationSummary([point('verified', false), point('deisolated', false), point('assigned', false), point('isolated')]);
    expect(s).toEqual({ total: 4, required: 1, verified: 0, deisolated: 0, pending_verification: 1 });
  });

  it('when every required point is verified, then nothing is pending whatever the optional points do', () => {
    const s = isolationSummary([point('verified'), point('verified'), point('assigned', false)]);
    expect(s).toEqual({ total: 3, required: 2, verified: 2, deisolated: 0, pending_verification: 0 });
  });
});

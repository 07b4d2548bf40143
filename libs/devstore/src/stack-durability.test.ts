/** Which durability a stack's local store gets: `make up` durable, test and bench stacks fast, unless told. */
import { stackDurability } from './stack';

describe('stackDurability', () => {
  it("when nothing is set, then make up's default ports get a durable store and free ports (tests, benches) a fast one", () => {
    expect(stackDurability({ ports: 'default' }, {})).toBe('durable');
    expect(stackDurability({ ports: 'free' }, {})).toBe('fast');
  });

  it('when PTW_STORE_DURABILITY is set, then it wins over the ports, and the option wins over both', () => {
    expect(stackDurability({ ports: 'default' }, { PTW_STORE_DURABILITY: 'fast' })).toBe('fast');
    expect(stackDurability({ ports: 'free' }, { PTW_STORE_DURABILITY: 'durable' })).toBe('durable');
    expect(stackDurability({ ports: 'free', durability: 'durable' }, { PTW_STORE_DURABILITY: 'fast' })).toBe('durable');
  });
});

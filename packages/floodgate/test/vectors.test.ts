import { ManualClock } from '../src/core/clock.js';
import { MemoryStore } from '../src/stores/memory.js';
import { storeConformance } from './helpers/vectors.js';

storeConformance('MemoryStore (async)', () => {
  const clock = new ManualClock();
  return { store: new MemoryStore({ clock }), setNow: (t) => clock.set(t) };
});

storeConformance('MemoryStore (sync path)', () => {
  const clock = new ManualClock();
  const store = new MemoryStore({ clock });
  return {
    store,
    setNow: (t) => clock.set(t),
    apply: async (key, set, cost, mode, lease) => store.applySync(key, set, cost, mode, lease),
  };
});

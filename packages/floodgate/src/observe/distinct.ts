/** Registers of a HyperLogLog sketch: 2^8, a standard error of about 1.04 / sqrt(256) = 6.5%. */
const BITS = 8;
export const REGISTERS = 1 << BITS;

/** FNV-1a over the string's UTF-16 code units, then mixed (murmur3's finaliser) so low bits are spread too. */
function hash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const NONE = new Uint8Array(REGISTERS);

/**
 * Counts distinct identifiers in fixed memory (Flajolet et al., HyperLogLog, 2007): each register keeps
 * the longest run of leading zeros seen among the hashes it is given. Sketches of parts of a stream merge
 * by taking the larger register, with no added error.
 */
export class DistinctCount {
  // Made at the first identifier: most buckets of most limiters never see one.
  #registers: Uint8Array | undefined;

  /** The registers, all 0 before the first identifier (that array is shared and never written). */
  get registers(): Uint8Array {
    return this.#registers ?? NONE;
  }

  add(key: string): void {
    const h = hash(key);
    const register = h >>> (32 - BITS);
    const rest = (h << BITS) | (1 << (BITS - 1));
    const rank = Math.clz32(rest) + 1;
    this.#registers ??= new Uint8Array(REGISTERS);
    const registers = this.#registers;
    if (rank > registers[register]!) registers[register] = rank;
  }

  clear(): void {
    this.#registers?.fill(0);
  }
}

/** The estimated number of distinct identifiers the sketches saw together. */
export function estimateDistinct(parts: readonly Uint8Array[]): number {
  const merged = new Uint8Array(REGISTERS);
  for (const part of parts)
    for (let i = 0; i < REGISTERS; i++) if (part[i]! > merged[i]!) merged[i] = part[i]!;
  let sum = 0;
  let zeros = 0;
  for (let i = 0; i < REGISTERS; i++) {
    sum += 2 ** -merged[i]!;
    if (merged[i] === 0) zeros++;
  }
  const alpha = 0.7213 / (1 + 1.079 / REGISTERS);
  const raw = (alpha * REGISTERS * REGISTERS) / sum;
  // Few identifiers: linear counting over the empty registers is the better estimate.
  if (raw <= 2.5 * REGISTERS && zeros > 0) return Math.round(REGISTERS * Math.log(REGISTERS / zeros));
  return Math.round(raw);
}

/** The statuses of `n` GET requests to `url`, one after another (each body read to its end). */
export async function statuses(
  url: string,
  n: number,
  headers: Record<string, string> = {},
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const res = await fetch(url, { headers });
    await res.arrayBuffer();
    out.push(res.status);
  }
  return out;
}

/** A sample's value on an admin listener's `/metrics` (`name{labels}` as written there), 0 when absent. */
export async function metric(adminUrl: string | undefined, line: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? 0 : Number(found.split(' ').pop());
}

let gate: Promise<void> = Promise.resolve();

/** Holds every request that waits at the gate (`atGate()`) until the returned function is called. */
export function holdRequests(): () => void {
  let open!: () => void;
  gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  return open;
}

/** The gate as it is now: resolved once the last `holdRequests()` is opened. */
export function atGate(): Promise<void> {
  return gate;
}

/** What the http layer reads of a request, whatever the framework: adapters build one per request. */
export interface RequestView {
  readonly method: string;
  /** The path, without the query string. */
  readonly path: string;
  /** A header's value by lower-case name; several values joined with ", ". */
  header(name: string): string | undefined;
  /**
   * The socket's peer address: '' when the socket is gone (the client left), undefined when the runtime has
   * no address at all (then a limit by IP cannot be made, and the guard says so).
   */
  readonly peer: string | undefined;
  /** The framework already resolved `peer` from forwarding headers (Express's `trust proxy`...). */
  readonly forwardedResolved?: boolean;
}

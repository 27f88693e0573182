/** What the http layer reads of a request, whatever the framework: adapters build one per request. */
export interface RequestView {
  readonly method: string;
  /** The path, without the query string. */
  readonly path: string;
  /** A header's value by lower-case name; several values joined with ", ". */
  header(name: string): string | undefined;
  /** The socket's peer address, when the runtime has one. */
  readonly peer: string | undefined;
}

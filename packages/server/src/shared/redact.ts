/** `scheme://user:password@` (or `scheme://token@`) anywhere in a text. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@"'`]*)@/gi;
/** Query parameters that carry a credential: `?password=...`, `&token=...`. */
const SECRET_PARAM = /([?&](?:password|passwd|pass|pwd|token|secret|auth|key|apikey|api_key)=)[^&\s#"'`]*/gi;

/**
 * A text with the credentials of every URL in it hidden: the password in `mysql://user:pass@host` (the user
 * name stays, to tell accounts apart), a lone token in `redis://token@host`, and credential query
 * parameters. For everything that is logged or echoed in an error: a URL given by an operator may carry a
 * secret, and logs travel further than the configuration they came from.
 */
export function redact(text: string): string {
  return text
    .replace(USERINFO, (_, scheme: string, info: string) => {
      const colon = info.indexOf(':');
      return `${scheme}${colon === -1 ? '***' : `${info.slice(0, colon)}:***`}@`;
    })
    .replace(SECRET_PARAM, '$1***');
}

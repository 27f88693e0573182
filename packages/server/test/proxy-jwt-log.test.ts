import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { send } from '@floodgate/test-support';
import { SignJWT } from 'jose';
import { pino } from 'pino';
import { validateProxyConfig } from '../src/proxy/config.js';
import { type RunningProxy, startProxy } from '../src/proxy/proxy.js';
import { type NodeUpstream, startNodeUpstream } from './helpers/upstreams.js';

// A `{ jwt }` key that fails says why in the log (rolled up per rule and reason), and never shows the token.

const SECRET = 'a-test-secret-of-32-characters!!';
const MESSAGE = 'JWT key failed: the request has no key from its token';

type Claims = { iss?: string; aud?: string; exp?: string; nbf?: string; key?: string; org?: string };
function token(options: Claims = {}): Promise<string> {
  const jwt = new SignJWT(options.org === undefined ? {} : { org: { id: options.org } })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('user-with-a-secret-subject')
    .setIssuer(options.iss ?? 'floodgate-tests')
    .setAudience(options.aud ?? 'api')
    .setExpirationTime(options.exp ?? '5m');
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(new TextEncoder().encode(options.key ?? SECRET));
}

describe('floodgate proxy: JWT key failures in the log', () => {
  let upstream: NodeUpstream;
  let proxy: RunningProxy;
  const logs: Record<string, unknown>[] = [];
  const sent: string[] = [];

  before(async () => {
    upstream = await startNodeUpstream();
    const log = pino({ base: null }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    proxy = await startProxy(
      validateProxyConfig({
        upstream: upstream.url,
        listen: 0,
        admin: false,
        jwt: { secret: SECRET, issuer: 'floodgate-tests', audience: 'api' },
        rules: [
          {
            name: 'org',
            key: { jwt: 'org.id' },
            onMissingKey: 'reject',
            policies: [{ limit: 100, window: '1m' }],
          },
        ],
      }),
      { log },
    );
  });
  after(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  const failures = () => logs.filter((l) => l.msg === MESSAGE);
  async function call(authorization: string | undefined): Promise<number> {
    if (authorization !== undefined) sent.push(authorization);
    const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
    return (await send(proxy.url, { headers })).status;
  }

  it('names why: missing, malformed, signature, expired, not yet valid, issuer, audience, claim', async () => {
    const cases: [string, string | undefined][] = [
      ['missing', undefined],
      ['missing', 'Basic dXNlcjpwYXNzd29yZA=='],
      ['malformed', 'Bearer not-a-jwt-at-all-but-secret-looking'],
      ['malformed', `Bearer ${Buffer.from('not json').toString('base64url')}.e30.c2lnbmF0dXJl`],
      ['signature', `Bearer ${await token({ org: 'acme', key: 'an-attackers-secret-of-32-chars!' })}`],
      ['expired', `Bearer ${await token({ org: 'acme', exp: '-1m' })}`],
      ['not-yet-valid', `Bearer ${await token({ org: 'acme', nbf: '10m' })}`],
      ['issuer', `Bearer ${await token({ org: 'acme', iss: 'someone-else' })}`],
      ['audience', `Bearer ${await token({ org: 'acme', aud: 'another-api' })}`],
      ['claim', `Bearer ${await token()}`],
    ];
    for (const [reason, authorization] of cases) assert.equal(await call(authorization), 400, reason);
    const reasons = failures().map((l) => l.reason);
    assert.deepEqual(reasons, [
      'missing',
      'malformed',
      'signature',
      'expired',
      'not-yet-valid',
      'issuer',
      'audience',
      'claim',
    ]);
    for (const line of failures()) {
      assert.equal(line.rule, 'org');
      assert.equal(line.onMissingKey, 'reject');
      assert.equal(line.failed, 1, 'the first of each reason at once');
    }
    assert.equal(await call(`Bearer ${await token({ org: 'acme' })}`), 200, 'a good token still passes');
    assert.equal(failures().length, 8, 'a good token logs no failure');
  });

  it('rolls up per rule and reason: a flood of bad tokens is one line now and one count later', async () => {
    const before = failures().length;
    for (let i = 0; i < 20; i++)
      assert.equal(await call(`Bearer ${await token({ org: `o${i}`, exp: '-1m' })}`), 400);
    assert.equal(failures().length, before, 'nothing more until the roll-up');
    await proxy.stop();
    const expired = failures().filter((l) => l.reason === 'expired');
    assert.equal(expired.length, 2);
    assert.equal(expired[1]!.failed, 20, 'the 20 counted at the stop');
    assert.equal(expired[1]!.seconds, 10);
  });

  it('never shows a token, nor any part of one', () => {
    const text = JSON.stringify(logs);
    for (const authorization of sent) {
      const credential = authorization.replace(/^\S+\s+/, '');
      assert.ok(!text.includes(credential), 'no token');
      for (const part of credential.split('.'))
        if (part.length >= 8) assert.ok(!text.includes(part), `no part of a token: ${part.slice(0, 6)}…`);
    }
    assert.ok(!text.includes('user-with-a-secret-subject'), 'no claim value');
    assert.ok(!text.includes(SECRET));
  });
});

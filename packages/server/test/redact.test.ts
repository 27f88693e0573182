import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { redact } from '../src/shared/redact.js';

describe('redact', () => {
  it('hides the password of every URL in a text, keeping the user name', () => {
    assert.equal(redact('mysql://app:s3cret@db:3306/x'), 'mysql://app:***@db:3306/x');
    assert.equal(
      redact('at redis://:tok@h:6379 and rediss://u:p@h2'),
      'at redis://:***@h:6379 and rediss://u:***@h2',
    );
    assert.equal(redact('redis://token@h'), 'redis://***@h');
    assert.equal(redact('http://u:p%40ss@up.example/path?x=1'), 'http://u:***@up.example/path?x=1');
    assert.equal(redact('"mysql://a:b@h/x?password=pw&ssl=1"'), '"mysql://a:***@h/x?password=***&ssl=1"');
    assert.equal(redact('redis-cluster://u:p@h1:1,h2:2'), 'redis-cluster://u:***@h1:1,h2:2');
  });

  it('leaves texts without credentials alone', () => {
    for (const text of ['redis://127.0.0.1:6379/3', 'http://h/a@b', 'user@example.com', 'sqlite:./x.db'])
      assert.equal(redact(text), text);
  });
});

import { createInterface } from 'node:readline';
import { openDatabase } from '../serve/database.js';
import { hashPassword } from '../serve/passwords.js';
import { loginName } from '../serve/user-names.js';
import { usageError } from '../shared/errors.js';

/** Reads a password: from a prompt on a terminal (not echoed), else the first line of stdin. */
async function readPassword(): Promise<string> {
  const input = process.stdin;
  if (!input.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of input) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  const rl = createInterface({ input, output: process.stderr, terminal: true });
  const write = (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput.bind(rl);
  let prompting = true;
  (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s) => {
    if (!prompting) write(s);
  };
  process.stderr.write('password: ');
  const answer = await new Promise<string>((resolve) => rl.question('', resolve));
  prompting = false;
  rl.close();
  process.stderr.write('\n');
  return answer;
}

export type UserAction = 'add' | 'passwd' | 'list' | 'remove';

export async function users(action: UserAction, name: string | undefined, dbUrl: string): Promise<string> {
  if (action !== 'list' && (name === undefined || !/^[\w.@-]{1,64}$/.test(name))) {
    throw usageError(`users ${action} needs a NAME of 1 to 64 letters, digits, ".", "_", "@" or "-"`);
  }
  const { db } = await openDatabase(dbUrl);
  try {
    if (action === 'list') return (await db.users()).join('\n');
    if (action === 'remove') {
      if (!(await db.removeUser(name!))) throw usageError(`no user "${name}"`);
      return `removed ${name}`;
    }
    if (action === 'passwd' && (await db.findUser(name!)) === undefined)
      throw usageError(`no user "${name}"`);
    if (action === 'add') {
      // Logins are counted under one form of the name (see loginName): two users of one form would share it.
      const twin = (await db.users()).find((user) => loginName(user) === loginName(name!));
      if (twin !== undefined) throw usageError(`user "${twin}" already exists`);
    }
    const password = await readPassword();
    if (password.length < 8) throw usageError('the password must have at least 8 characters');
    const hash = await hashPassword(password);
    if (action === 'passwd') {
      if (!(await db.setPassword(name!, hash))) throw usageError(`no user "${name}"`);
      return `changed the password of ${name}`;
    }
    if (!(await db.addUser(name!, hash))) throw usageError(`user "${name}" already exists`);
    return `added ${name}`;
  } finally {
    await db.close();
  }
}

import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { environmentError, usageError } from '../shared/errors.js';
import { importDriver } from './optional.js';
import { hashPassword } from './passwords.js';

export interface Continent {
  continent_id: number;
  continent_name: string;
}

/** The tutorial's data: seven continents, in its order. */
export const CONTINENTS = [
  'ASIA',
  'AFRICA',
  'NORTH AMERICA',
  'SOUTH AMERICA',
  'ANTARCTICA',
  'EUROPE',
  'AUSTRALIA',
];
/**
 * The tutorial's example user, whose password is public: created on the first run of the embedded default
 * only (see `serve`), so the tutorial's curl check works as written there and nowhere else.
 */
export const EXAMPLE_USER = { name: 'john_doe', password: 'EXAMPLE_PASSWORD' };

/** Where the API's data lives: SQLite (embedded, the default) or MySQL/MariaDB. */
export interface Database {
  readonly kind: 'sqlite' | 'mysql';
  continents(): Promise<Continent[]>;
  /**
   * The user's row as the database matches `user` (with its collation: on MySQL/MariaDB, `JOHN_DOE` may be
   * john_doe's row): its stored name, the user's identity, and its password hash.
   */
  findUser(user: string): Promise<UserRow | undefined>;
  addUser(user: string, hash: string): Promise<boolean>;
  removeUser(user: string): Promise<boolean>;
  /** Replaces a user's password hash; false when there is no such user. */
  setPassword(user: string, hash: string): Promise<boolean>;
  users(): Promise<string[]>;
  close(): Promise<void>;
}

export interface UserRow {
  name: string;
  hash: string;
}

export interface Opened {
  db: Database;
  /** What first-run seeding did, for the log. */
  seeded: { continents: boolean; exampleUser: boolean };
  /** The database has no user at all: nobody can log in until one is added. */
  withoutUsers: boolean;
}

export interface OpenOptions {
  /** Create the tutorial's example user when there is no user yet. Default: false. */
  exampleUser?: boolean;
}

export async function openDatabase(url: string, options: OpenOptions = {}): Promise<Opened> {
  const exampleUser = options.exampleUser ?? false;
  if (url.startsWith('sqlite:')) return openSqlite(url.slice('sqlite:'.length), exampleUser);
  if (url.startsWith('mysql://') || url.startsWith('mariadb://'))
    return openMysql(url.replace(/^mariadb:/, 'mysql:'), exampleUser);
  throw usageError(
    `--db must be sqlite:PATH, sqlite::memory: or mysql://user:pass@host:port/database; got "${url}"`,
  );
}

async function seed(
  db: Database,
  empty: { continents: boolean; users: boolean },
  insert: (name: string) => Promise<void>,
  exampleUser: boolean,
): Promise<Opened> {
  if (empty.continents) for (const name of CONTINENTS) await insert(name);
  const addExample = empty.users && exampleUser;
  if (addExample) await db.addUser(EXAMPLE_USER.name, await hashPassword(EXAMPLE_USER.password));
  return {
    db,
    seeded: { continents: empty.continents, exampleUser: addExample },
    withoutUsers: empty.users && !addExample,
  };
}

async function openSqlite(path: string, exampleUser: boolean): Promise<Opened> {
  if (path === '')
    throw usageError('--db sqlite: needs a path, e.g. sqlite:./floodgate.db or sqlite::memory:');
  // A directory that is missing is more likely a typo than a wish: refuse it rather than create it.
  if (path !== ':memory:' && !existsSync(dirname(resolve(path)))) {
    throw usageError(
      `cannot open SQLite database "${path}": the directory ${dirname(resolve(path))} does not exist`,
    );
  }
  const { default: Sqlite } = await importDriver(
    'better-sqlite3',
    'a sqlite: database (--db)',
    () => import('better-sqlite3'),
  );
  let sqlite: import('better-sqlite3').Database;
  try {
    sqlite = new Sqlite(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('busy_timeout = 5000');
    sqlite.exec(`CREATE TABLE IF NOT EXISTS continents (
        continent_id INTEGER PRIMARY KEY AUTOINCREMENT, continent_name VARCHAR(100) NOT NULL);
      CREATE TABLE IF NOT EXISTS users (username VARCHAR(255) PRIMARY KEY, password_hash VARCHAR(255) NOT NULL);`);
  } catch (error) {
    throw environmentError(`cannot open SQLite database "${path}": ${(error as Error).message}`);
  }
  const count = (table: string) =>
    (sqlite.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  const db: Database = {
    kind: 'sqlite',
    continents: async () =>
      sqlite
        .prepare('SELECT continent_id, continent_name FROM continents ORDER BY continent_id')
        .all() as Continent[],
    findUser: async (user) => {
      const row = sqlite.prepare('SELECT username, password_hash FROM users WHERE username = ?').get(user) as
        | { username: string; password_hash: string }
        | undefined;
      return row === undefined ? undefined : { name: row.username, hash: row.password_hash };
    },
    addUser: async (user, hash) =>
      sqlite.prepare('INSERT OR IGNORE INTO users (username, password_hash) VALUES (?, ?)').run(user, hash)
        .changes === 1,
    removeUser: async (user) =>
      sqlite.prepare('DELETE FROM users WHERE username = ?').run(user).changes === 1,
    setPassword: async (user, hash) =>
      sqlite.prepare('UPDATE users SET password_hash = ? WHERE username = ?').run(hash, user).changes === 1,
    users: async () =>
      (sqlite.prepare('SELECT username FROM users ORDER BY username').all() as { username: string }[]).map(
        (r) => r.username,
      ),
    close: async () => {
      sqlite.close();
    },
  };
  return seed(
    db,
    { continents: count('continents') === 0, users: count('users') === 0 },
    async (name) => {
      sqlite.prepare('INSERT INTO continents (continent_name) VALUES (?)').run(name);
    },
    exampleUser,
  );
}

/** Creates the database when it is missing, as the tables are; a user without the right gets the server's answer. */
async function createDatabase(
  mysql: typeof import('mysql2/promise'),
  url: string,
  name: string,
): Promise<void> {
  const server = new URL(url);
  server.pathname = '/';
  const connection = await mysql.createConnection({ uri: server.toString(), connectTimeout: 5000 });
  try {
    const [found] = await connection.query(
      'SELECT 1 FROM information_schema.schemata WHERE schema_name = ?',
      [name],
    );
    if ((found as unknown[]).length === 0) await connection.query(`CREATE DATABASE \`${name}\``);
  } finally {
    await connection.end();
  }
}

async function openMysql(url: string, exampleUser: boolean): Promise<Opened> {
  const mysql = await importDriver('mysql2', 'a mysql:// database (--db)', () => import('mysql2/promise'));
  let pool: import('mysql2/promise').Pool;
  try {
    new URL(url);
  } catch {
    throw usageError(`--db is not a valid URL: "${url}"`);
  }
  const name = decodeURIComponent(new URL(url).pathname.slice(1));
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(name)) {
    throw usageError(
      `--db must name the MySQL database, in letters, digits, "_" or "$": mysql://user:pass@host:port/DATABASE`,
    );
  }
  try {
    await createDatabase(mysql, url, name);
    pool = mysql.createPool({ uri: url, connectionLimit: 10, connectTimeout: 5000 });
    await pool.query(`CREATE TABLE IF NOT EXISTS continents (
      continent_id INT AUTO_INCREMENT PRIMARY KEY, continent_name VARCHAR(100) NOT NULL)`);
    await pool.query(`CREATE TABLE IF NOT EXISTS users (
      username VARCHAR(255) PRIMARY KEY, password_hash VARCHAR(255) NOT NULL)`);
  } catch (error) {
    const where = new URL(url);
    throw environmentError(
      `cannot use the MySQL database at ${where.hostname}:${where.port || 3306}${where.pathname}: ${(error as Error).message}`,
    );
  }
  const rows = async <T>(sql: string, params: unknown[] = []) => (await pool.query(sql, params))[0] as T;
  const count = async (table: string) =>
    (await rows<{ n: number }[]>(`SELECT COUNT(*) AS n FROM ${table}`))[0]!.n;
  const db: Database = {
    kind: 'mysql',
    continents: () =>
      rows<Continent[]>('SELECT continent_id, continent_name FROM continents ORDER BY continent_id'),
    findUser: async (user) => {
      const [row] = await rows<{ username: string; password_hash: string }[]>(
        'SELECT username, password_hash FROM users WHERE username = ? LIMIT 1',
        [user],
      );
      return row === undefined ? undefined : { name: row.username, hash: row.password_hash };
    },
    addUser: async (user, hash) =>
      (
        await rows<{ affectedRows: number }>(
          'INSERT IGNORE INTO users (username, password_hash) VALUES (?, ?)',
          [user, hash],
        )
      ).affectedRows === 1,
    removeUser: async (user) =>
      (await rows<{ affectedRows: number }>('DELETE FROM users WHERE username = ?', [user])).affectedRows ===
      1,
    setPassword: async (user, hash) =>
      (
        await rows<{ affectedRows: number }>('UPDATE users SET password_hash = ? WHERE username = ?', [
          hash,
          user,
        ])
      ).affectedRows === 1,
    users: async () =>
      (await rows<{ username: string }[]>('SELECT username FROM users ORDER BY username')).map(
        (r) => r.username,
      ),
    close: () => pool.end(),
  };
  return seed(
    db,
    { continents: (await count('continents')) === 0, users: (await count('users')) === 0 },
    async (name) => {
      await pool.query('INSERT INTO continents (continent_name) VALUES (?)', [name]);
    },
    exampleUser,
  );
}

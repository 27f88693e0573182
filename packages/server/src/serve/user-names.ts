/**
 * The name a login is counted under. Databases compare user names loosely (MySQL's and MariaDB's usual
 * collations ignore case and accents, and trailing spaces as PAD SPACE does), so one user answers to many
 * spellings: counted under each spelling, every one would get its own budget of guesses. A name that
 * resolves to a user is counted under the name the database stored; either way it is then folded to one
 * form: compatibility forms (NFKC: full-width letters), accents and case, and trailing spaces. Folding
 * more than a database does only merges budgets, which errs on the safe side.
 */
export function loginName(name: string): string {
  return name.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase().normalize('NFKC').replace(/ +$/, '');
}

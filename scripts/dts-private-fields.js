#!/usr/bin/env node
// Makes the emitted declarations (dist/**/*.d.ts) readable by a consumer whose tsconfig `target`
// is older than ES2015. For a class with ECMAScript private fields (`#slots`), tsc writes the
// member `#private;` into its .d.ts, and TypeScript refuses a private identifier anywhere when
// it targets ES5 or ES3 (error TS18028), even in a declaration file. This rewrites each such line
// to `private "#private";`: a TypeScript-private member, which keeps what the emitted line is
// for (the class stays nominal: an object of the same shape is not one of its instances) and
// names nothing a consumer could declare or reach. Run after every `tsc -p tsconfig.build.json`
// (package.json's prepare and build, test/helpers/child.ts's ensureDist).
//   node scripts/dts-private-fields.js [dist directory, default dist]
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.resolve(process.argv[2] ?? path.join(__dirname, '..', 'dist'));
const EMITTED = /^(\s*)#private;$/gm;
// Any other private identifier left in a declaration would break those consumers the same way.
const PRIVATE_NAME = /^\s*(?:readonly\s+|static\s+)*#[\w$]/m;

let rewritten = 0;
for (const entry of fs.readdirSync(dist, { recursive: true, encoding: 'utf8' })) {
  if (!entry.endsWith('.d.ts')) continue;
  const file = path.join(dist, entry);
  const text = fs.readFileSync(file, 'utf8');
  const fixed = text.replace(EMITTED, '$1private "#private";');
  if (PRIVATE_NAME.test(fixed)) {
    console.error(`${file}: a private identifier other than tsc's '#private;' line is left`);
    process.exit(1);
  }
  if (fixed !== text) {
    fs.writeFileSync(file, fixed);
    rewritten++;
  }
}
console.log(`dts-private-fields: rewrote '#private;' in ${rewritten} declaration files of ${dist}`);

#!/usr/bin/env node
// Entry point. In a checkout (the TypeScript sources beside this file) the CLI runs from them
// through tsx, so a change needs no build; an installed package ships only the compiled
// JavaScript in dist/ and runs that, with no TypeScript loader at run time.
import { existsSync } from 'node:fs';

if (existsSync(new URL('./cli.ts', import.meta.url))) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./cli.ts');
} else {
  await import('../dist/bin/cli.js');
}

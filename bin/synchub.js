#!/usr/bin/env node
// Entry point: load TypeScript through tsx, then run the CLI.
import { register } from 'tsx/esm/api';

register();
await import('./cli.ts');

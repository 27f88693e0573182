#!/usr/bin/env node
// The installed entry point. It exists before the build, so npm can link it; the command itself is built
// to dist/ by `npm install` (the root package's prepare script).
import { run } from '../dist/cli/main.js';

await run();

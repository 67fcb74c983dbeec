// `synchub`: one command line dispatching to the hub, the agent and the demo.
// Each area is imported when it is asked for: the hub's modules (its stores, pg, metrics) took
// ~0.4 s to load, which `synchub agent run` paid before its first frame.
import { formatCommandList, runCli, UsageError } from '../shared/cli.ts';
import { VERSION } from '../shared/version.ts';

async function usage(): Promise<string> {
  const { HUB_COMMANDS } = await import('../hub/cli.ts');
  const { AGENT_COMMANDS } = await import('../agent/cli.ts');
  const { DEMO_HELP } = await import('./demo.ts');
  return (
    `synchub ${VERSION} — real-time sync hub and agent for SQLite apps\n\n` +
    `usage: synchub <command> [flags]   (synchub <command> --help for one)\n\n` +
    `hub (the server):\n${formatCommandList(Object.values(HUB_COMMANDS))}\n\n` +
    `agent (beside each app):\n${formatCommandList(Object.values(AGENT_COMMANDS))}\n\n` +
    `try it:\n${formatCommandList([DEMO_HELP])}\n\n` +
    `Every flag can also come from its SYNCHUB_* variable (--admin-port = SYNCHUB_ADMIN_PORT); a flag beats its variable.\n` +
    `synchub --version prints the version.\n`
  );
}

await runCli(async () => {
  const [area, ...rest] = process.argv.slice(2);
  if (area === 'hub') {
    const { hubCli } = await import('../hub/cli.ts');
    return hubCli(rest);
  }
  if (area === 'agent') {
    const { agentCli } = await import('../agent/cli.ts');
    return agentCli(rest);
  }
  if (area === 'demo') {
    const { demoCli } = await import('./demo.ts');
    return demoCli(rest);
  }
  if (area === '--version' || area === '-v' || area === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (area === undefined || area === 'help' || area === '--help' || area === '-h') {
    // Bare `synchub` is a usage error (exit 2) that still shows the commands.
    process.stdout.write(await usage());
    return area === undefined ? 2 : 0;
  }
  throw new UsageError(`unknown command ${JSON.stringify(area)}; run: synchub --help`);
});

// `synchub`: one command line dispatching to the hub and the agent.
import { runCli, UsageError } from '../shared/cli.ts';
import { hubCli, HUB_USAGE } from '../hub/cli.ts';

const USAGE = `synchub — real-time sync hub and agent for SQLite apps\n\n${HUB_USAGE}\n`;

await runCli(async () => {
  const [area, ...rest] = process.argv.slice(2);
  if (area === 'hub') return hubCli(rest);
  if (area === 'agent') {
    const { agentCli } = await import('../agent/cli.ts');
    return agentCli(rest);
  }
  if (area === undefined || area === 'help' || area === '--help' || area === '-h') {
    process.stdout.write(USAGE);
    return area === undefined ? 2 : 0;
  }
  throw new UsageError(`unknown command ${JSON.stringify(area)}; run: synchub help`);
});

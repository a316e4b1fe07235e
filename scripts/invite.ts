/**
 * `npm run invite` (in the image: `node dist/scripts/invite.js`): prints the link that adds the bot to
 * a server with the scopes and permissions it uses, from DISCORD_APP_ID (environment or `.env`).
 */
import { inviteUrl } from '../bot/invite.js';
import { loadEnvFile } from '../core/io/env-file.js';

loadEnvFile();
const appId = process.env.DISCORD_APP_ID?.trim() ?? '';
if (!/^\d{17,20}$/.test(appId)) {
  process.stderr.write(
    'DISCORD_APP_ID is not set (or not an id): copy the Application ID from the Developer Portal (your application → General Information) into .env\n',
  );
  process.exit(1);
}
process.stdout.write(`${inviteUrl(appId)}\n`);

import { type REST, Routes } from 'discord.js';
import type { Logger } from '../core/io/logger.js';
import type { SettingsStore } from './store/settings.js';

/** Posts moderation notices and budget alerts to a guild's log channel, if it has one. Never throws. */
export class Notices {
  constructor(
    private readonly rest: REST,
    private readonly settings: SettingsStore,
    private readonly log: Logger,
  ) {}

  async post(guildId: string, content: string, channelId?: string | null): Promise<boolean> {
    try {
      const target = channelId ?? (await this.settings.policy(guildId)).logChannelId;
      if (!target) return false;
      await this.rest.post(Routes.channelMessages(target), { body: { content: content.slice(0, 2000), allowed_mentions: { parse: [] } } });
      return true;
    } catch (err) {
      this.log.warn({ err, guildId }, 'could not post to the log channel');
      return false;
    }
  }
}

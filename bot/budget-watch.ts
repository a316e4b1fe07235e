import { budgetThresholdReached } from '../core/budget.js';
import type { Logger } from '../core/io/logger.js';
import { adminText } from '../core/messages.js';
import type { StoredJob } from '../core/ports.js';
import { utcMonthStart } from '../core/quota.js';
import type { Notices } from './notices.js';
import type { SettingsStore } from './store/settings.js';
import type { StatsStore } from './store/stats.js';

/**
 * After a paid job settles, tells the guild's log channel when its monthly spend crosses 80 % and
 * 100 % of the budget, once per threshold per month and budget in force (budget_notices remembers
 * what was sent and for which amount, so a budget changed by /admin budget is announced afresh).
 */
export function createBudgetWatch(o: { stats: StatsStore; settings: SettingsStore; notices: Notices; now: () => Date; log: Logger }) {
  return async (job: StoredJob): Promise<void> => {
    if (job.costUsd <= 0) return;
    try {
      const month = utcMonthStart(o.now());
      const [spent, policy] = await Promise.all([o.stats.spentInMonth(job.guildId, month), o.settings.policy(job.guildId)]);
      const threshold = budgetThresholdReached(spent, policy.monthlyBudgetUsd);
      if (threshold === null) return;
      // Claim every threshold up to the reached one, so a jump straight to 100 % never sends a late 80 % notice.
      const fresh = await Promise.all(
        [80, 100].filter((t) => t <= threshold).map((t) => o.stats.claimBudgetNotice(job.guildId, month, t, policy.monthlyBudgetUsd)),
      );
      if (!fresh.at(-1)) return;
      const pct = Math.floor((spent / policy.monthlyBudgetUsd) * 100);
      await o.notices.post(
        job.guildId,
        adminText.budgetAlert(threshold === 100 ? Math.max(pct, 100) : pct, spent, policy.monthlyBudgetUsd),
      );
    } catch (err) {
      o.log.warn({ err, guildId: job.guildId }, 'budget check failed');
    }
  };
}

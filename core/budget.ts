/** The highest alert threshold (80 or 100 % of the monthly budget) that the spend has reached, if any. */
export function budgetThresholdReached(spentUsd: number, budgetUsd: number): 80 | 100 | null {
  if (budgetUsd <= 0) return null;
  const ratio = spentUsd / budgetUsd;
  if (ratio >= 1) return 100;
  if (ratio >= 0.8) return 80;
  return null;
}

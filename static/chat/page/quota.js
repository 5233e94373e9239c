// The sidebar's allowance line: re-read after each reply ends, since the worker charges the day's tokens then.
import { $, urls } from "./state.js";

export async function refreshQuota() {
  const line = $("quota");
  if (!line) return;
  try {
    const response = await fetch(urls.quota, { credentials: "same-origin" });
    if (!response.ok) return;
    const q = await response.json();
    const parts = [q.tokens_left_today === null ? "No daily token limit"
      : `${q.tokens_left_today} of ${q.tokens_per_day} tokens left today`];
    if (q.messages_per_minute) parts.push(`up to ${q.messages_per_minute} messages a minute`);
    line.textContent = parts.join(" · ") + ".";
  } catch {
    // The line is a courtesy: an unreachable endpoint leaves the last figure shown.
  }
}

// Pages without the chat's modules (Prompts, Account): a form with data-confirm asks before it is sent — a
// prompt deleted or a share link revoked cannot be taken back. Without script the form still works, unasked.
document.addEventListener("submit", (e) => {
  const question = e.target.dataset ? e.target.dataset.confirm : "";
  if (question && !window.confirm(question)) e.preventDefault();
});

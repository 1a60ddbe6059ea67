"""Tool calling for the OpenAI chat API: request validation (:mod:`.spec`), tool turns in the
history (:mod:`.history`), prompt rendering (:mod:`.prompt`), the constraint that keeps calls
well-formed (:mod:`.grammar`), output parsing, streamed or not (:mod:`.parser`), and the
server-side tools' agent loop (:mod:`.agent`)."""

"""Tool calling for the OpenAI chat API: request validation (:mod:`.spec`), prompt rendering
(:mod:`.prompt`), the constraint that keeps calls well-formed (:mod:`.grammar`), output
parsing, streamed or not (:mod:`.parser`), and server-side tools (:mod:`.agent`)."""

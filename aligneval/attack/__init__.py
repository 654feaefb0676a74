"""Adversarial attacks with TextAttack: NLTK resources, recipe registry, fast model wrapper,
resumable runner. TextAttack itself is imported lazily (`aligneval.attack.loader`), never here."""

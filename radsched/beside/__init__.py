"""Running beside an existing engine (issue 17): roles, the SMS engine's RIS over REST, shadow mode."""

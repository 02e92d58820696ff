"""The LLM agents: the planner (is the evidence enough?), the interaction agent (which tool
calls would find what is missing), the answerer and the arbiter; one agent turn asked and
stored (agent_call, llm_client), JSON read out of what a model wrote (json_reply), the
answer mapped to a choice (normalise) and several answers voted on (vote).
"""

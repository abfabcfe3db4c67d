"""Builds an agent from configs and feeds it replay batches."""

import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from tf_softmoe import config as config_lib
from tf_softmoe import networks
from tf_softmoe.agents import dqn_agent
from tf_softmoe.agents import rainbow_agent


def make_agent(agent_config, network_config, time_step_spec, action_spec,
               agent_step=None, train_step_counter=None):
    """A `DqnAgent` or `RainbowAgent` with its `QNetwork`, variables created.

    Args:
      agent_config: an `AgentConfig`.
      network_config: a `NetworkConfig`, built as it is; its head must fit
        the agent (`config.check_agent_fits_network`).
      time_step_spec, action_spec: TF-Agents specs of the environment.
      agent_step: int64 variable counting environment steps (made if None).
      train_step_counter: int64 variable counting updates (made if None).

    Raises:
      ValueError: the network's head does not fit the agent's kind.
    """
    config_lib.check_agent_fits_network(agent_config, network_config)
    time_step_spec = tensor_spec.from_spec(time_step_spec)
    action_spec = tensor_spec.from_spec(action_spec)
    if agent_step is None:
        agent_step = tf.Variable(0, dtype=tf.int64, name="agent_step")
    if train_step_counter is None:
        train_step_counter = tf.Variable(0, dtype=tf.int64, name="train_step")
    q_network = networks.build_q_network(
        network_config, time_step_spec.observation, action_spec)
    cls = (rainbow_agent.RainbowAgent if agent_config.kind == "rainbow"
           else dqn_agent.DqnAgent)
    agent = cls(time_step_spec, action_spec, q_network, agent_config, agent_step,
                train_step_counter=train_step_counter)
    agent.initialize()
    return agent


def batch_to_transition(batch, action_dtype=tf.int64):
    """A replay batch (dict of tensors) as a TF-Agents `Transition`.

    `reward` is the n-step return and `discount` the bootstrap factor γ^n'
    (0 after a terminal), so agents built with gamma=1 compute the n-step
    target. Steps whose window hit a terminal are marked LAST.
    """
    batch = {key: tf.convert_to_tensor(batch[key]) for key in
             ("state", "action", "reward", "next_state", "discount")}
    state = batch["state"]
    batch_size = tf.shape(state)[0]
    discount = tf.cast(batch["discount"], tf.float32)
    first = ts.TimeStep(
        step_type=tf.fill([batch_size], ts.StepType.MID),
        reward=tf.zeros([batch_size], tf.float32),
        discount=tf.ones([batch_size], tf.float32),
        observation=state)
    last = ts.TimeStep(
        step_type=tf.where(discount > 0, ts.StepType.MID, ts.StepType.LAST),
        reward=tf.cast(batch["reward"], tf.float32),
        discount=discount,
        observation=batch["next_state"])
    action = policy_step.PolicyStep(action=tf.cast(batch["action"], action_dtype),
                                    state=(), info=())
    return trajectory.Transition(first, action, last)

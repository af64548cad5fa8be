//! Which instance runs which task: the leader's half of the application's group protocol.
//!
//! Members are stream threads; threads of one instance share a process id. Tasks go to
//! processes in proportion to their threads, then to threads within each process:
//!
//! 1. a task stays with the process that ran it last, while that process is within its
//!    share (so state does not move);
//! 2. a task nobody kept goes to a process that has its state on disk, if one has room
//!    (so restoring it is cheap);
//! 3. what is left goes to the least loaded processes.
//!
//! It is a pure function of its input, so every member that becomes leader computes the
//! same assignment from the same subscriptions.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::TaskId;

/// What one member (stream thread) says in its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberInfo {
    pub member_id: String,
    /// The instance the thread belongs to.
    pub process: String,
    /// Tasks the thread ran in the previous generation.
    pub previous: BTreeSet<TaskId>,
    /// Tasks whose state the instance has on disk.
    pub on_disk: BTreeSet<TaskId>,
}

/// Tasks per member id; every member appears.
pub(crate) fn assign_tasks(members: &[MemberInfo], tasks: &BTreeSet<TaskId>) -> BTreeMap<String, Vec<TaskId>> {
    let mut result: BTreeMap<String, Vec<TaskId>> = members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
    if members.is_empty() {
        return result;
    }
    // Processes and their threads, in id order so the result does not depend on the order
    // members are listed in.
    let mut threads: BTreeMap<&str, Vec<&MemberInfo>> = BTreeMap::new();
    for m in members {
        threads.entry(m.process.as_str()).or_default().push(m);
    }
    for list in threads.values_mut() {
        list.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    }
    let total_threads = members.len();
    let quota = |process: &str| (tasks.len() * threads[process].len()).div_ceil(total_threads);
    let mut load: BTreeMap<&str, Vec<TaskId>> = threads.keys().map(|p| (*p, Vec::new())).collect();
    let mut unassigned: Vec<TaskId> = Vec::new();

    // 1. Sticky: the process that ran the task keeps it while within its share.
    for &task in tasks {
        let owner = members.iter().filter(|m| m.previous.contains(&task)).map(|m| m.process.as_str()).min();
        match owner {
            Some(p) if load[p].len() < quota(p) => load.entry(p).or_default().push(task),
            _ => unassigned.push(task),
        }
    }
    // 2. State on disk, 3. least loaded: both pick the process with the lowest load per
    // thread, among those with room (candidates with state first).
    let pick = |load: &BTreeMap<&str, Vec<TaskId>>, candidates: &mut dyn Iterator<Item = &str>| {
        candidates
            .filter(|p| load[p].len() < quota(p))
            .min_by(|a, b| {
                let (la, lb) = (load[a].len() * threads[b].len(), load[b].len() * threads[a].len());
                la.cmp(&lb).then_with(|| a.cmp(b))
            })
            .map(str::to_string)
    };
    for task in unassigned {
        let with_state: Vec<&str> =
            threads.keys().copied().filter(|p| threads[p].iter().any(|m| m.on_disk.contains(&task))).collect();
        let chosen = pick(&load, &mut with_state.iter().copied())
            .or_else(|| pick(&load, &mut threads.keys().copied()))
            .or_else(|| threads.keys().next().map(|p| p.to_string()));
        if let Some(p) = chosen
            && let Some((key, _)) = threads.get_key_value(p.as_str())
        {
            load.entry(key).or_default().push(task);
        }
    }

    // Within each process: a thread keeps what it ran while within its share, the rest
    // go to the least loaded thread.
    for (process, mut process_tasks) in load {
        process_tasks.sort();
        let members = &threads[process];
        let share = process_tasks.len().div_ceil(members.len());
        let mut rest = Vec::new();
        for task in process_tasks {
            match members.iter().find(|m| m.previous.contains(&task)) {
                Some(m) if result[&m.member_id].len() < share => {
                    result.entry(m.member_id.clone()).or_default().push(task)
                }
                _ => rest.push(task),
            }
        }
        for task in rest {
            if let Some(m) = members.iter().min_by_key(|m| (result[&m.member_id].len(), m.member_id.clone())) {
                result.entry(m.member_id.clone()).or_default().push(task);
            }
        }
    }
    for list in result.values_mut() {
        list.sort();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(n: i32) -> BTreeSet<TaskId> {
        (0..n).map(|p| TaskId::new(0, p)).chain((0..n).map(|p| TaskId::new(1, p))).collect()
    }

    fn member(id: &str, process: &str) -> MemberInfo {
        MemberInfo {
            member_id: id.into(),
            process: process.into(),
            previous: BTreeSet::new(),
            on_disk: BTreeSet::new(),
        }
    }

    fn next_round(members: &[MemberInfo], result: &BTreeMap<String, Vec<TaskId>>) -> Vec<MemberInfo> {
        members
            .iter()
            .map(|m| MemberInfo { previous: result[&m.member_id].iter().copied().collect(), ..m.clone() })
            .collect()
    }

    fn moved(before: &BTreeMap<String, Vec<TaskId>>, after: &BTreeMap<String, Vec<TaskId>>) -> usize {
        after.iter().map(|(m, ts)| ts.iter().filter(|t| !before.get(m).is_some_and(|b| b.contains(t))).count()).sum()
    }

    #[test]
    fn tasks_spread_evenly_over_threads_and_every_task_is_assigned_once() {
        let members = vec![member("a1", "A"), member("a2", "A"), member("b1", "B")];
        let result = assign_tasks(&members, &tasks(6));
        let sizes: Vec<usize> = result.values().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 4]);
        let all: BTreeSet<TaskId> = result.values().flatten().copied().collect();
        assert_eq!(all, tasks(6));
        let mut reversed = members.clone();
        reversed.reverse();
        assert_eq!(assign_tasks(&reversed, &tasks(6)), result, "the order members are listed in does not matter");
    }

    #[test]
    fn a_new_instance_takes_its_share_and_only_that_moves() {
        let first = vec![member("a", "A")];
        let before = assign_tasks(&first, &tasks(3));
        assert_eq!(before["a"].len(), 6);
        let mut members = next_round(&first, &before);
        members.push(member("b", "B"));
        let after = assign_tasks(&members, &tasks(3));
        assert_eq!((after["a"].len(), after["b"].len()), (3, 3));
        assert_eq!(moved(&before, &after), 3, "only the new instance's share moved");
        // A rebalance with nothing changed moves nothing.
        let again = assign_tasks(&next_round(&members, &after), &tasks(3));
        assert_eq!(again, after);
    }

    #[test]
    fn a_dead_instances_tasks_go_to_survivors_preferring_state_on_disk() {
        let members = vec![member("a", "A"), member("b", "B"), member("c", "C")];
        let before = assign_tasks(&members, &tasks(3));
        let lost: Vec<TaskId> = before["c"].clone();
        assert_eq!(lost.len(), 2);
        // B still has state of one of C's tasks from an earlier generation.
        let mut survivors = next_round(&members[..2], &before);
        survivors[1].on_disk.insert(lost[0]);
        let after = assign_tasks(&survivors, &tasks(3));
        assert_eq!((after["a"].len(), after["b"].len()), (3, 3));
        assert!(after["b"].contains(&lost[0]), "the task went where its state is: {after:?}");
        assert_eq!(moved(&before, &after), 2, "survivors kept their own tasks");
    }

    #[test]
    fn threads_of_one_instance_keep_their_tasks() {
        let members = vec![member("a1", "A"), member("a2", "A")];
        let before = assign_tasks(&members, &tasks(2));
        let after = assign_tasks(&next_round(&members, &before), &tasks(2));
        assert_eq!(before, after);
        assert!(assign_tasks(&[], &tasks(2)).is_empty());
        let more_members = vec![member("a", "A"), member("b", "B"), member("c", "C")];
        let few = assign_tasks(&more_members, &[TaskId::new(0, 0)].into_iter().collect());
        assert_eq!(few.values().map(Vec::len).sum::<usize>(), 1, "one task, three members: two idle");
    }
}

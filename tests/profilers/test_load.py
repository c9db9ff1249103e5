"""A busy machine is detected from /proc/stat snapshots."""



def test_busy_machine_is_detected_from_proc_stat_snapshots():
    from profilers.load import busy_cores, load_warning

    # cpu user nice system idle iowait irq softirq steal: 100 of 200 jiffies busy on 2 cores = 1 core
    before = "cpu  1000 0 0 1000 0 0 0 0 0 0\ncpu0 ..."
    after = "cpu  1100 0 0 1100 0 0 0 0 0 0\ncpu0 ..."
    assert abs(busy_cores(before, after, 2) - 1.0) < 1e-9
    message = load_warning(1.0, threads=2, cores=2)
    assert "about 1.0 of this machine's 2 cores" in message and "--threads 1" in message
    assert load_warning(1.0, threads=1, cores=2) is None  # one thread fits beside it
    assert load_warning(0.1, threads=2, cores=2) is None  # idle

# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_intune_ctl_global_optspecs
    string join \n h/help V/version
end

function __fish_intune_ctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_intune_ctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_intune_ctl_using_subcommand
    set -l cmd (__fish_intune_ctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -s V -l version -d 'Print version'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "classify" -d 'Run every frame of a capture through the real program and print what it decided'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "daemon" -d 'The filter daemon: attach to the interfaces, keep the rule set current, print hit counters; reads /etc/intune-ctl/config.toml (or --config), flags override it'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "run" -d 'The filter daemon: attach to the interfaces, keep the rule set current, print hit counters; reads /etc/intune-ctl/config.toml (or --config), flags override it'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "status" -d 'The daemon\'s state: interfaces, mode, rules per source, last refresh, resolver'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "refresh" -d 'Ask the daemon to check the web service and look the names up again now'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "stats" -d 'Hit counters of the running (or stopped) filter, from its pinned maps'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "lookup" -d 'What the running filter does with a packet to (or from) ADDRESS, asked of the real program against the live maps'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "detach" -d 'Remove the filter from interfaces (all by default) and its pins'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "man" -d 'Print the man page (roff), for packaging'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "completions" -d 'Print shell completions, for packaging'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "check-config" -d 'Validate a config file, its endpoint files and exclusions, without touching anything'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "endpoints" -d 'Print the endpoint sets of one source, or the effective list'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "list" -d 'Print the effective rule set with each prefix\'s ports, endpoint sets and sources'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "changes" -d 'Print the last applied changes of the rule set'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "resolve" -d 'Resolve every exact name of the rule set once and print the answers'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "check" -d 'Would a device reach every endpoint through this gateway now? Resolves the names and asks the live filter about each address on each port; exit 1 when something required would be blocked'
complete -c intune-ctl -n "__fish_intune_ctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l pcap -d 'Capture to classify (pcap or pcapng, Ethernet link type)' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l endpoints -d 'Extra endpoint sets, in the Microsoft 365 endpoint web service\'s JSON schema, added to the built-in list (repeatable) [config: sources.files]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l exclude -d 'A prefix or host name never to allow (repeatable) [config: sources.exclude]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l region -d 'The tenant\'s region (its location in the Intune admin center): the built-in list\'s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out [config: sources.region; default all]' -r -f -a "all\t'Every region\'s endpoints'
na\t'North America'
eu\t'Europe'
ap\t'Asia Pacific'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l skip-set -d 'An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple\'s push service with all of 17.0.0.0/8) [config: sources.skip_sets]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l mode -d 'monitor: pass everything and count; enforce: drop what is neither Intune nor infrastructure [config: policy.mode; default monitor]' -r -f -a "monitor\t'Pass everything, count'
enforce\t'Pass Intune traffic and the infrastructure a network needs; drop the rest'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l direction -d 'Which address is matched: dst (traffic from devices), src (return traffic) or both [config: policy.direction; default dst]' -r -f -a "dst\t'Match the destination: traffic from devices to Intune'
src\t'Match the source: return traffic from Intune'
both\t'Either'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l dns-resolver -d 'In enforce mode, allow DNS only to this resolver and answers only from it (repeatable; default: any resolver, which makes DNS a way around enforce mode) [config: policy.dns_resolvers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l dhcp-server -d 'A DHCP server or relay DHCP may go to besides the broadcast (repeatable) [config: policy.dhcp_servers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l idle-timeout -d 'What leaves every list (a prefix a refresh removed, an address out of DNS, an expired learned address) still passes for its connections until no packet came for this long; 0 removes it at once [config: policy.idle_timeout; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l local-address -d 'One of the gateway\'s own addresses with its prefix length (repeatable): frames to it are local, as the daemon decides for the addresses it follows' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l no-builtin -d 'Leave the built-in list out [config: sources.builtin = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l peer-ports -d 'Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680, UDP 3544) [config: policy.peer_ports]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l no-local -d 'Filter the gateway\'s own traffic, link-local multicast and broadcast like any other (by default they pass as `local`) [config: policy.allow_local = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -l json -d 'One JSON object a frame, then one with the totals'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand classify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l iface -d 'Interface to attach to (repeatable); `IF:DIR` gives it its own direction (dst, src, both) [config: [[interface]]]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l xdp-mode -d 'auto: native where the driver has it, else generic [config: daemon.xdp_mode]' -r -f -a "auto\t'Native, falling back to generic when the driver has no XDP support'
native\t''
generic\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l interval -d 'Seconds between hit-counter tables [config: daemon.counters_interval; default 5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l metrics-listen -d 'Serve Prometheus metrics on this address [config: metrics.listen]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l endpoints -d 'Extra endpoint sets, in the Microsoft 365 endpoint web service\'s JSON schema, added to the built-in list (repeatable) [config: sources.files]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l exclude -d 'A prefix or host name never to allow (repeatable) [config: sources.exclude]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l region -d 'The tenant\'s region (its location in the Intune admin center): the built-in list\'s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out [config: sources.region; default all]' -r -f -a "all\t'Every region\'s endpoints'
na\t'North America'
eu\t'Europe'
ap\t'Asia Pacific'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l skip-set -d 'An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple\'s push service with all of 17.0.0.0/8) [config: sources.skip_sets]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l service-url -d '[config: sources.service_url]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l instance -d '[config: sources.instance; default Worldwide]' -r -f -a "worldwide\t''
USGovDoD\t''
USGovGCCHigh\t''
china\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l service-area -d 'Service areas to ask for (repeatable) [config: sources.service_areas; default MEM, Common]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l common-set -d 'Common sets to keep (repeatable) [config: sources.common_sets; default the article\'s Intune dependencies]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l category -d 'Keep only sets of this category (repeatable): Optimize, Allow, Default [config: sources.categories]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l refresh-interval -d 'Seconds between version checks; at least 3600 against the real service [config: sources.refresh_interval; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l max-shrink -d 'Share of the service\'s prefixes a new list may remove before it is rejected [config: sources.max_shrink; default 0.5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l service-timeout -d 'Seconds a request may take, and to wait for a connection (a third of it) [config: sources.service_timeout; default 30]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l resolver -d 'Resolver to look the listed names up with (repeatable; default: the system\'s, from /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS [config: dns.resolvers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dns-min-ttl -d 'Shortest time between lookups of a name, whatever its TTL [config: dns.min_ttl; 30s]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dns-max-ttl -d 'Longest time between lookups of a name, whatever its TTL [config: dns.max_ttl; 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dns-grace -d 'How long an address stays after the TTL of the last answer that held it [config: dns.grace; 10m]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dns-timeout -d 'How long one query waits for an answer [config: dns.timeout; 3s]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dns-rate -d 'Lookups started per second at most [config: dns.rate; 50]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l learn-trusted -d 'Learn only from answers of this resolver (repeatable; default: the --dns-resolver ones; learning needs one or the other) [config: dns.learn_trusted]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l learn-max -d 'Learned addresses kept at most; the least recently seen goes first [config: dns.learn_max]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l mode -d 'monitor: pass everything and count; enforce: drop what is neither Intune nor infrastructure [config: policy.mode; default monitor]' -r -f -a "monitor\t'Pass everything, count'
enforce\t'Pass Intune traffic and the infrastructure a network needs; drop the rest'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l direction -d 'Which address is matched: dst (traffic from devices), src (return traffic) or both [config: policy.direction; default dst]' -r -f -a "dst\t'Match the destination: traffic from devices to Intune'
src\t'Match the source: return traffic from Intune'
both\t'Either'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dns-resolver -d 'In enforce mode, allow DNS only to this resolver and answers only from it (repeatable; default: any resolver, which makes DNS a way around enforce mode) [config: policy.dns_resolvers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l dhcp-server -d 'A DHCP server or relay DHCP may go to besides the broadcast (repeatable) [config: policy.dhcp_servers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l idle-timeout -d 'What leaves every list (a prefix a refresh removed, an address out of DNS, an expired learned address) still passes for its connections until no packet came for this long; 0 removes it at once [config: policy.idle_timeout; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l detach-on-stop -d 'Remove the filter when the daemon stops (by default it stays attached) [config: daemon.detach_on_stop]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l no-builtin -d 'Leave the built-in list out [config: sources.builtin = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l peer-ports -d 'Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680, UDP 3544) [config: policy.peer_ports]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l no-service -d 'Do not use the endpoint web service [config: sources.service = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l no-ipv6 -d 'Ask for IPv4 prefixes only [config: sources.no_ipv6]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l required-only -d 'Keep only sets the service marks required [config: sources.required_only]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l no-resolve -d 'Do not resolve the listed names: match the listed prefixes only [config: dns.enabled = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l learn-from-dns -d 'Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving through the filtered interfaces (reads device traffic: off unless asked) [config: dns.learn_from_dns]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -l no-local -d 'Filter the gateway\'s own traffic, link-local multicast and broadcast like any other (by default they pass as `local`) [config: policy.allow_local = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand daemon" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l iface -d 'Interface to attach to (repeatable); `IF:DIR` gives it its own direction (dst, src, both) [config: [[interface]]]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l xdp-mode -d 'auto: native where the driver has it, else generic [config: daemon.xdp_mode]' -r -f -a "auto\t'Native, falling back to generic when the driver has no XDP support'
native\t''
generic\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l interval -d 'Seconds between hit-counter tables [config: daemon.counters_interval; default 5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l metrics-listen -d 'Serve Prometheus metrics on this address [config: metrics.listen]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l endpoints -d 'Extra endpoint sets, in the Microsoft 365 endpoint web service\'s JSON schema, added to the built-in list (repeatable) [config: sources.files]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l exclude -d 'A prefix or host name never to allow (repeatable) [config: sources.exclude]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l region -d 'The tenant\'s region (its location in the Intune admin center): the built-in list\'s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out [config: sources.region; default all]' -r -f -a "all\t'Every region\'s endpoints'
na\t'North America'
eu\t'Europe'
ap\t'Asia Pacific'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l skip-set -d 'An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple\'s push service with all of 17.0.0.0/8) [config: sources.skip_sets]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l service-url -d '[config: sources.service_url]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l instance -d '[config: sources.instance; default Worldwide]' -r -f -a "worldwide\t''
USGovDoD\t''
USGovGCCHigh\t''
china\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l service-area -d 'Service areas to ask for (repeatable) [config: sources.service_areas; default MEM, Common]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l common-set -d 'Common sets to keep (repeatable) [config: sources.common_sets; default the article\'s Intune dependencies]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l category -d 'Keep only sets of this category (repeatable): Optimize, Allow, Default [config: sources.categories]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l refresh-interval -d 'Seconds between version checks; at least 3600 against the real service [config: sources.refresh_interval; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l max-shrink -d 'Share of the service\'s prefixes a new list may remove before it is rejected [config: sources.max_shrink; default 0.5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l service-timeout -d 'Seconds a request may take, and to wait for a connection (a third of it) [config: sources.service_timeout; default 30]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l resolver -d 'Resolver to look the listed names up with (repeatable; default: the system\'s, from /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS [config: dns.resolvers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dns-min-ttl -d 'Shortest time between lookups of a name, whatever its TTL [config: dns.min_ttl; 30s]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dns-max-ttl -d 'Longest time between lookups of a name, whatever its TTL [config: dns.max_ttl; 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dns-grace -d 'How long an address stays after the TTL of the last answer that held it [config: dns.grace; 10m]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dns-timeout -d 'How long one query waits for an answer [config: dns.timeout; 3s]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dns-rate -d 'Lookups started per second at most [config: dns.rate; 50]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l learn-trusted -d 'Learn only from answers of this resolver (repeatable; default: the --dns-resolver ones; learning needs one or the other) [config: dns.learn_trusted]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l learn-max -d 'Learned addresses kept at most; the least recently seen goes first [config: dns.learn_max]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l mode -d 'monitor: pass everything and count; enforce: drop what is neither Intune nor infrastructure [config: policy.mode; default monitor]' -r -f -a "monitor\t'Pass everything, count'
enforce\t'Pass Intune traffic and the infrastructure a network needs; drop the rest'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l direction -d 'Which address is matched: dst (traffic from devices), src (return traffic) or both [config: policy.direction; default dst]' -r -f -a "dst\t'Match the destination: traffic from devices to Intune'
src\t'Match the source: return traffic from Intune'
both\t'Either'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dns-resolver -d 'In enforce mode, allow DNS only to this resolver and answers only from it (repeatable; default: any resolver, which makes DNS a way around enforce mode) [config: policy.dns_resolvers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l dhcp-server -d 'A DHCP server or relay DHCP may go to besides the broadcast (repeatable) [config: policy.dhcp_servers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l idle-timeout -d 'What leaves every list (a prefix a refresh removed, an address out of DNS, an expired learned address) still passes for its connections until no packet came for this long; 0 removes it at once [config: policy.idle_timeout; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l detach-on-stop -d 'Remove the filter when the daemon stops (by default it stays attached) [config: daemon.detach_on_stop]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l no-builtin -d 'Leave the built-in list out [config: sources.builtin = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l peer-ports -d 'Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680, UDP 3544) [config: policy.peer_ports]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l no-service -d 'Do not use the endpoint web service [config: sources.service = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l no-ipv6 -d 'Ask for IPv4 prefixes only [config: sources.no_ipv6]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l required-only -d 'Keep only sets the service marks required [config: sources.required_only]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l no-resolve -d 'Do not resolve the listed names: match the listed prefixes only [config: dns.enabled = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l learn-from-dns -d 'Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving through the filtered interfaces (reads device traffic: off unless asked) [config: dns.learn_from_dns]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -l no-local -d 'Filter the gateway\'s own traffic, link-local multicast and broadcast like any other (by default they pass as `local`) [config: policy.allow_local = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand status" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand status" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand status" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand status" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand status" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand refresh" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand refresh" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand refresh" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand refresh" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand refresh" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand refresh" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l by -r -f -a "prefix\t'Every rule with hits: prefix or resolved address'
set\t'Per endpoint set (a rule\'s hits count for each set that lists it)'
port\t'Per port that Intune traffic matched on (ports beyond the counters count as "other")'
outcome\t'The outcome counters only'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l watch -d 'Print again every SECONDS, with rates' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand stats" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l port -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l proto -r -f -a "tcp\t''
udp\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l direction -r -f -a "dst\t'ADDRESS is the destination: a device talking to it'
src\t'ADDRESS is the source: its answer coming back'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand lookup" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand detach" -l iface -d 'Interface to detach from (repeatable; default: every one)' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand detach" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand detach" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand detach" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand detach" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand detach" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand man" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand completions" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l source -r -f -a "builtin\t''
service\t'Fetch once from the web service (version, then endpoints)'
file\t'The files given with --endpoints'
service-tags\t'The Azure service tags `[sources] service_tags` names, from its file (the tags the daemon took last, when the file is rejected) or downloaded once from its url'
effective\t'Built-in list, the service\'s last accepted list (the cache; no request), files, less exclusions'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l endpoints -d 'Extra endpoint sets, in the Microsoft 365 endpoint web service\'s JSON schema, added to the built-in list (repeatable) [config: sources.files]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l exclude -d 'A prefix or host name never to allow (repeatable) [config: sources.exclude]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l region -d 'The tenant\'s region (its location in the Intune admin center): the built-in list\'s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out [config: sources.region; default all]' -r -f -a "all\t'Every region\'s endpoints'
na\t'North America'
eu\t'Europe'
ap\t'Asia Pacific'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l skip-set -d 'An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple\'s push service with all of 17.0.0.0/8) [config: sources.skip_sets]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l service-url -d '[config: sources.service_url]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l instance -d '[config: sources.instance; default Worldwide]' -r -f -a "worldwide\t''
USGovDoD\t''
USGovGCCHigh\t''
china\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l service-area -d 'Service areas to ask for (repeatable) [config: sources.service_areas; default MEM, Common]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l common-set -d 'Common sets to keep (repeatable) [config: sources.common_sets; default the article\'s Intune dependencies]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l category -d 'Keep only sets of this category (repeatable): Optimize, Allow, Default [config: sources.categories]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l refresh-interval -d 'Seconds between version checks; at least 3600 against the real service [config: sources.refresh_interval; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l max-shrink -d 'Share of the service\'s prefixes a new list may remove before it is rejected [config: sources.max_shrink; default 0.5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l service-timeout -d 'Seconds a request may take, and to wait for a connection (a third of it) [config: sources.service_timeout; default 30]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l no-builtin -d 'Leave the built-in list out [config: sources.builtin = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l peer-ports -d 'Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680, UDP 3544) [config: policy.peer_ports]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l no-service -d 'Do not use the endpoint web service [config: sources.service = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l no-ipv6 -d 'Ask for IPv4 prefixes only [config: sources.no_ipv6]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l required-only -d 'Keep only sets the service marks required [config: sources.required_only]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l ips -d 'The unique prefixes, one a line'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l urls -d 'The unique names, one a line'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand endpoints" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l endpoints -d 'Extra endpoint sets, in the Microsoft 365 endpoint web service\'s JSON schema, added to the built-in list (repeatable) [config: sources.files]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l exclude -d 'A prefix or host name never to allow (repeatable) [config: sources.exclude]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l region -d 'The tenant\'s region (its location in the Intune admin center): the built-in list\'s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out [config: sources.region; default all]' -r -f -a "all\t'Every region\'s endpoints'
na\t'North America'
eu\t'Europe'
ap\t'Asia Pacific'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l skip-set -d 'An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple\'s push service with all of 17.0.0.0/8) [config: sources.skip_sets]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l service-url -d '[config: sources.service_url]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l instance -d '[config: sources.instance; default Worldwide]' -r -f -a "worldwide\t''
USGovDoD\t''
USGovGCCHigh\t''
china\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l service-area -d 'Service areas to ask for (repeatable) [config: sources.service_areas; default MEM, Common]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l common-set -d 'Common sets to keep (repeatable) [config: sources.common_sets; default the article\'s Intune dependencies]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l category -d 'Keep only sets of this category (repeatable): Optimize, Allow, Default [config: sources.categories]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l refresh-interval -d 'Seconds between version checks; at least 3600 against the real service [config: sources.refresh_interval; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l max-shrink -d 'Share of the service\'s prefixes a new list may remove before it is rejected [config: sources.max_shrink; default 0.5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l service-timeout -d 'Seconds a request may take, and to wait for a connection (a third of it) [config: sources.service_timeout; default 30]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l no-builtin -d 'Leave the built-in list out [config: sources.builtin = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l peer-ports -d 'Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680, UDP 3544) [config: policy.peer_ports]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l no-service -d 'Do not use the endpoint web service [config: sources.service = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l no-ipv6 -d 'Ask for IPv4 prefixes only [config: sources.no_ipv6]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l required-only -d 'Keep only sets the service marks required [config: sources.required_only]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -l last -d 'How many of the newest changes to show' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand changes" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l endpoints -d 'Extra endpoint sets, in the Microsoft 365 endpoint web service\'s JSON schema, added to the built-in list (repeatable) [config: sources.files]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l exclude -d 'A prefix or host name never to allow (repeatable) [config: sources.exclude]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l region -d 'The tenant\'s region (its location in the Intune admin center): the built-in list\'s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out [config: sources.region; default all]' -r -f -a "all\t'Every region\'s endpoints'
na\t'North America'
eu\t'Europe'
ap\t'Asia Pacific'"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l skip-set -d 'An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple\'s push service with all of 17.0.0.0/8) [config: sources.skip_sets]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l service-url -d '[config: sources.service_url]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l instance -d '[config: sources.instance; default Worldwide]' -r -f -a "worldwide\t''
USGovDoD\t''
USGovGCCHigh\t''
china\t''"
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l service-area -d 'Service areas to ask for (repeatable) [config: sources.service_areas; default MEM, Common]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l common-set -d 'Common sets to keep (repeatable) [config: sources.common_sets; default the article\'s Intune dependencies]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l category -d 'Keep only sets of this category (repeatable): Optimize, Allow, Default [config: sources.categories]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l refresh-interval -d 'Seconds between version checks; at least 3600 against the real service [config: sources.refresh_interval; default 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l max-shrink -d 'Share of the service\'s prefixes a new list may remove before it is rejected [config: sources.max_shrink; default 0.5]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l service-timeout -d 'Seconds a request may take, and to wait for a connection (a third of it) [config: sources.service_timeout; default 30]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l resolver -d 'Resolver to look the listed names up with (repeatable; default: the system\'s, from /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS [config: dns.resolvers]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l dns-min-ttl -d 'Shortest time between lookups of a name, whatever its TTL [config: dns.min_ttl; 30s]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l dns-max-ttl -d 'Longest time between lookups of a name, whatever its TTL [config: dns.max_ttl; 1h]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l dns-grace -d 'How long an address stays after the TTL of the last answer that held it [config: dns.grace; 10m]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l dns-timeout -d 'How long one query waits for an answer [config: dns.timeout; 3s]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l dns-rate -d 'Lookups started per second at most [config: dns.rate; 50]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l learn-trusted -d 'Learn only from answers of this resolver (repeatable; default: the --dns-resolver ones; learning needs one or the other) [config: dns.learn_trusted]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l learn-max -d 'Learned addresses kept at most; the least recently seen goes first [config: dns.learn_max]' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l no-builtin -d 'Leave the built-in list out [config: sources.builtin = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l peer-ports -d 'Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680, UDP 3544) [config: policy.peer_ports]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l no-service -d 'Do not use the endpoint web service [config: sources.service = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l no-ipv6 -d 'Ask for IPv4 prefixes only [config: sources.no_ipv6]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l required-only -d 'Keep only sets the service marks required [config: sources.required_only]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l no-resolve -d 'Do not resolve the listed names: match the listed prefixes only [config: dns.enabled = false]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l learn-from-dns -d 'Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving through the filtered interfaces (reads device traffic: off unless asked) [config: dns.learn_from_dns]'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -l json
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand resolve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l set -d 'Only this endpoint set (repeat for more)' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l name -d 'Only this name (repeat for more); no listed prefix is checked then' -r
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l config -d 'The config file (default: /etc/intune-ctl/config.toml when it exists); flags given here override it' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l bpffs-dir -d 'Where the program, its maps and links are pinned [config: paths.bpffs_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l state-dir -d 'The state directory: recorded rules, caches, changes [config: paths.state_dir]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l control-socket -d 'The daemon\'s control socket [config: paths.control_socket]' -r -F
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l connect -d 'Also open a TCP connection from the gateway to one address of each name on port 443 (off by default: it sends traffic)'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -l json -d 'One JSON object per checked (set, name, address, port)'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand check" -s h -l help -d 'Print help'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "classify" -d 'Run every frame of a capture through the real program and print what it decided'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "daemon" -d 'The filter daemon: attach to the interfaces, keep the rule set current, print hit counters; reads /etc/intune-ctl/config.toml (or --config), flags override it'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "status" -d 'The daemon\'s state: interfaces, mode, rules per source, last refresh, resolver'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "refresh" -d 'Ask the daemon to check the web service and look the names up again now'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "stats" -d 'Hit counters of the running (or stopped) filter, from its pinned maps'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "lookup" -d 'What the running filter does with a packet to (or from) ADDRESS, asked of the real program against the live maps'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "detach" -d 'Remove the filter from interfaces (all by default) and its pins'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "man" -d 'Print the man page (roff), for packaging'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "completions" -d 'Print shell completions, for packaging'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "check-config" -d 'Validate a config file, its endpoint files and exclusions, without touching anything'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "endpoints" -d 'Print the endpoint sets of one source, or the effective list'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "list" -d 'Print the effective rule set with each prefix\'s ports, endpoint sets and sources'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "changes" -d 'Print the last applied changes of the rule set'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "resolve" -d 'Resolve every exact name of the rule set once and print the answers'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "check" -d 'Would a device reach every endpoint through this gateway now? Resolves the names and asks the live filter about each address on each port; exit 1 when something required would be blocked'
complete -c intune-ctl -n "__fish_intune_ctl_using_subcommand help; and not __fish_seen_subcommand_from classify daemon status refresh stats lookup detach man completions check-config endpoints list changes resolve check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

#compdef intune-ctl

autoload -U is-at-least

_intune-ctl() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_intune-ctl_commands" \
"*::: :->intune-ctl" \
&& ret=0
    case $state in
    (intune-ctl)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:intune-ctl-command-$line[1]:"
        case $line[1] in
            (classify)
_arguments "${_arguments_options[@]}" : \
'--pcap=[Capture to classify (pcap or pcapng, Ethernet link type)]:FILE:_files' \
'*--endpoints=[Extra endpoint sets, in the Microsoft 365 endpoint web service'\''s JSON schema, added to the built-in list (repeatable) \[config\: sources.files\]]:FILE:_files' \
'*--exclude=[A prefix or host name never to allow (repeatable) \[config\: sources.exclude\]]:PREFIX|NAME:_default' \
'--region=[The tenant'\''s region (its location in the Intune admin center)\: the built-in list'\''s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out \[config\: sources.region; default all\]]:REGION:((all\:"Every region'\''s endpoints"
na\:"North America"
eu\:"Europe"
ap\:"Asia Pacific"))' \
'*--skip-set=[An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple'\''s push service with all of 17.0.0.0/8) \[config\: sources.skip_sets\]]:ID:_default' \
'--mode=[monitor\: pass everything and count; enforce\: drop what is neither Intune nor infrastructure \[config\: policy.mode; default monitor\]]:MODE:((monitor\:"Pass everything, count"
enforce\:"Pass Intune traffic and the infrastructure a network needs; drop the rest"))' \
'--direction=[Which address is matched\: dst (traffic from devices), src (return traffic) or both \[config\: policy.direction; default dst\]]:DIRECTION:((dst\:"Match the destination\: traffic from devices to Intune"
src\:"Match the source\: return traffic from Intune"
both\:"Either"))' \
'*--dns-resolver=[In enforce mode, allow DNS only to this resolver and answers only from it (repeatable; default\: any resolver, which makes DNS a way around enforce mode) \[config\: policy.dns_resolvers\]]:ADDRESS:_default' \
'*--dhcp-server=[A DHCP server or relay DHCP may go to besides the broadcast (repeatable) \[config\: policy.dhcp_servers\]]:ADDRESS:_default' \
'--idle-timeout=[What leaves every list (a prefix a refresh removed, an address out of DNS, an expired learned address) still passes for its connections until no packet came for this long; 0 removes it at once \[config\: policy.idle_timeout; default 1h\]]:DURATION:_default' \
'*--local-address=[One of the gateway'\''s own addresses with its prefix length (repeatable)\: frames to it are local, as the daemon decides for the addresses it follows]:ADDR/LEN:_default' \
'--no-builtin[Leave the built-in list out \[config\: sources.builtin = false\]]' \
'--peer-ports[Also allow the port-only sets for any address (Delivery Optimization peering\: TCP 7680, UDP 3544) \[config\: policy.peer_ports\]]' \
'--no-local[Filter the gateway'\''s own traffic, link-local multicast and broadcast like any other (by default they pass as \`local\`) \[config\: policy.allow_local = false\]]' \
'--json[One JSON object a frame, then one with the totals]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(daemon)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'*--iface=[Interface to attach to (repeatable); \`IF\:DIR\` gives it its own direction (dst, src, both) \[config\: \[\[interface\]\]\]]:IF[:DIR]:_default' \
'--xdp-mode=[auto\: native where the driver has it, else generic \[config\: daemon.xdp_mode\]]:XDP_MODE:((auto\:"Native, falling back to generic when the driver has no XDP support"
native\:""
generic\:""))' \
'--interval=[Seconds between hit-counter tables \[config\: daemon.counters_interval; default 5\]]:SECONDS:_default' \
'--metrics-listen=[Serve Prometheus metrics on this address \[config\: metrics.listen\]]:ADDR:PORT:_default' \
'*--endpoints=[Extra endpoint sets, in the Microsoft 365 endpoint web service'\''s JSON schema, added to the built-in list (repeatable) \[config\: sources.files\]]:FILE:_files' \
'*--exclude=[A prefix or host name never to allow (repeatable) \[config\: sources.exclude\]]:PREFIX|NAME:_default' \
'--region=[The tenant'\''s region (its location in the Intune admin center)\: the built-in list'\''s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out \[config\: sources.region; default all\]]:REGION:((all\:"Every region'\''s endpoints"
na\:"North America"
eu\:"Europe"
ap\:"Asia Pacific"))' \
'*--skip-set=[An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple'\''s push service with all of 17.0.0.0/8) \[config\: sources.skip_sets\]]:ID:_default' \
'--service-url=[\[config\: sources.service_url\]]:URL:_default' \
'--instance=[\[config\: sources.instance; default Worldwide\]]:INSTANCE:(worldwide USGovDoD USGovGCCHigh china)' \
'*--service-area=[Service areas to ask for (repeatable) \[config\: sources.service_areas; default MEM, Common\]]:AREA:_default' \
'*--common-set=[Common sets to keep (repeatable) \[config\: sources.common_sets; default the article'\''s Intune dependencies\]]:ID:_default' \
'*--category=[Keep only sets of this category (repeatable)\: Optimize, Allow, Default \[config\: sources.categories\]]:CATEGORY:_default' \
'--refresh-interval=[Seconds between version checks; at least 3600 against the real service \[config\: sources.refresh_interval; default 1h\]]:SECONDS:_default' \
'--max-shrink=[Share of the service'\''s prefixes a new list may remove before it is rejected \[config\: sources.max_shrink; default 0.5\]]:SHARE:_default' \
'--service-timeout=[Seconds a request may take, and to wait for a connection (a third of it) \[config\: sources.service_timeout; default 30\]]:SECONDS:_default' \
'*--resolver=[Resolver to look the listed names up with (repeatable; default\: the system'\''s, from /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS \[config\: dns.resolvers\]]:ADDR:PORT:_default' \
'--dns-min-ttl=[Shortest time between lookups of a name, whatever its TTL \[config\: dns.min_ttl; 30s\]]:DURATION:_default' \
'--dns-max-ttl=[Longest time between lookups of a name, whatever its TTL \[config\: dns.max_ttl; 1h\]]:DURATION:_default' \
'--dns-grace=[How long an address stays after the TTL of the last answer that held it \[config\: dns.grace; 10m\]]:DURATION:_default' \
'--dns-timeout=[How long one query waits for an answer \[config\: dns.timeout; 3s\]]:DURATION:_default' \
'--dns-rate=[Lookups started per second at most \[config\: dns.rate; 50\]]:N:_default' \
'*--learn-trusted=[Learn only from answers of this resolver (repeatable; default\: the --dns-resolver ones; learning needs one or the other) \[config\: dns.learn_trusted\]]:ADDR:_default' \
'--learn-max=[Learned addresses kept at most; the least recently seen goes first \[config\: dns.learn_max\]]:N:_default' \
'--mode=[monitor\: pass everything and count; enforce\: drop what is neither Intune nor infrastructure \[config\: policy.mode; default monitor\]]:MODE:((monitor\:"Pass everything, count"
enforce\:"Pass Intune traffic and the infrastructure a network needs; drop the rest"))' \
'--direction=[Which address is matched\: dst (traffic from devices), src (return traffic) or both \[config\: policy.direction; default dst\]]:DIRECTION:((dst\:"Match the destination\: traffic from devices to Intune"
src\:"Match the source\: return traffic from Intune"
both\:"Either"))' \
'*--dns-resolver=[In enforce mode, allow DNS only to this resolver and answers only from it (repeatable; default\: any resolver, which makes DNS a way around enforce mode) \[config\: policy.dns_resolvers\]]:ADDRESS:_default' \
'*--dhcp-server=[A DHCP server or relay DHCP may go to besides the broadcast (repeatable) \[config\: policy.dhcp_servers\]]:ADDRESS:_default' \
'--idle-timeout=[What leaves every list (a prefix a refresh removed, an address out of DNS, an expired learned address) still passes for its connections until no packet came for this long; 0 removes it at once \[config\: policy.idle_timeout; default 1h\]]:DURATION:_default' \
'--detach-on-stop[Remove the filter when the daemon stops (by default it stays attached) \[config\: daemon.detach_on_stop\]]' \
'--no-builtin[Leave the built-in list out \[config\: sources.builtin = false\]]' \
'--peer-ports[Also allow the port-only sets for any address (Delivery Optimization peering\: TCP 7680, UDP 3544) \[config\: policy.peer_ports\]]' \
'--no-service[Do not use the endpoint web service \[config\: sources.service = false\]]' \
'--no-ipv6[Ask for IPv4 prefixes only \[config\: sources.no_ipv6\]]' \
'--required-only[Keep only sets the service marks required \[config\: sources.required_only\]]' \
'--no-resolve[Do not resolve the listed names\: match the listed prefixes only \[config\: dns.enabled = false\]]' \
'--learn-from-dns[Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving through the filtered interfaces (reads device traffic\: off unless asked) \[config\: dns.learn_from_dns\]]' \
'--no-local[Filter the gateway'\''s own traffic, link-local multicast and broadcast like any other (by default they pass as \`local\`) \[config\: policy.allow_local = false\]]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'*--iface=[Interface to attach to (repeatable); \`IF\:DIR\` gives it its own direction (dst, src, both) \[config\: \[\[interface\]\]\]]:IF[:DIR]:_default' \
'--xdp-mode=[auto\: native where the driver has it, else generic \[config\: daemon.xdp_mode\]]:XDP_MODE:((auto\:"Native, falling back to generic when the driver has no XDP support"
native\:""
generic\:""))' \
'--interval=[Seconds between hit-counter tables \[config\: daemon.counters_interval; default 5\]]:SECONDS:_default' \
'--metrics-listen=[Serve Prometheus metrics on this address \[config\: metrics.listen\]]:ADDR:PORT:_default' \
'*--endpoints=[Extra endpoint sets, in the Microsoft 365 endpoint web service'\''s JSON schema, added to the built-in list (repeatable) \[config\: sources.files\]]:FILE:_files' \
'*--exclude=[A prefix or host name never to allow (repeatable) \[config\: sources.exclude\]]:PREFIX|NAME:_default' \
'--region=[The tenant'\''s region (its location in the Intune admin center)\: the built-in list'\''s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out \[config\: sources.region; default all\]]:REGION:((all\:"Every region'\''s endpoints"
na\:"North America"
eu\:"Europe"
ap\:"Asia Pacific"))' \
'*--skip-set=[An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple'\''s push service with all of 17.0.0.0/8) \[config\: sources.skip_sets\]]:ID:_default' \
'--service-url=[\[config\: sources.service_url\]]:URL:_default' \
'--instance=[\[config\: sources.instance; default Worldwide\]]:INSTANCE:(worldwide USGovDoD USGovGCCHigh china)' \
'*--service-area=[Service areas to ask for (repeatable) \[config\: sources.service_areas; default MEM, Common\]]:AREA:_default' \
'*--common-set=[Common sets to keep (repeatable) \[config\: sources.common_sets; default the article'\''s Intune dependencies\]]:ID:_default' \
'*--category=[Keep only sets of this category (repeatable)\: Optimize, Allow, Default \[config\: sources.categories\]]:CATEGORY:_default' \
'--refresh-interval=[Seconds between version checks; at least 3600 against the real service \[config\: sources.refresh_interval; default 1h\]]:SECONDS:_default' \
'--max-shrink=[Share of the service'\''s prefixes a new list may remove before it is rejected \[config\: sources.max_shrink; default 0.5\]]:SHARE:_default' \
'--service-timeout=[Seconds a request may take, and to wait for a connection (a third of it) \[config\: sources.service_timeout; default 30\]]:SECONDS:_default' \
'*--resolver=[Resolver to look the listed names up with (repeatable; default\: the system'\''s, from /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS \[config\: dns.resolvers\]]:ADDR:PORT:_default' \
'--dns-min-ttl=[Shortest time between lookups of a name, whatever its TTL \[config\: dns.min_ttl; 30s\]]:DURATION:_default' \
'--dns-max-ttl=[Longest time between lookups of a name, whatever its TTL \[config\: dns.max_ttl; 1h\]]:DURATION:_default' \
'--dns-grace=[How long an address stays after the TTL of the last answer that held it \[config\: dns.grace; 10m\]]:DURATION:_default' \
'--dns-timeout=[How long one query waits for an answer \[config\: dns.timeout; 3s\]]:DURATION:_default' \
'--dns-rate=[Lookups started per second at most \[config\: dns.rate; 50\]]:N:_default' \
'*--learn-trusted=[Learn only from answers of this resolver (repeatable; default\: the --dns-resolver ones; learning needs one or the other) \[config\: dns.learn_trusted\]]:ADDR:_default' \
'--learn-max=[Learned addresses kept at most; the least recently seen goes first \[config\: dns.learn_max\]]:N:_default' \
'--mode=[monitor\: pass everything and count; enforce\: drop what is neither Intune nor infrastructure \[config\: policy.mode; default monitor\]]:MODE:((monitor\:"Pass everything, count"
enforce\:"Pass Intune traffic and the infrastructure a network needs; drop the rest"))' \
'--direction=[Which address is matched\: dst (traffic from devices), src (return traffic) or both \[config\: policy.direction; default dst\]]:DIRECTION:((dst\:"Match the destination\: traffic from devices to Intune"
src\:"Match the source\: return traffic from Intune"
both\:"Either"))' \
'*--dns-resolver=[In enforce mode, allow DNS only to this resolver and answers only from it (repeatable; default\: any resolver, which makes DNS a way around enforce mode) \[config\: policy.dns_resolvers\]]:ADDRESS:_default' \
'*--dhcp-server=[A DHCP server or relay DHCP may go to besides the broadcast (repeatable) \[config\: policy.dhcp_servers\]]:ADDRESS:_default' \
'--idle-timeout=[What leaves every list (a prefix a refresh removed, an address out of DNS, an expired learned address) still passes for its connections until no packet came for this long; 0 removes it at once \[config\: policy.idle_timeout; default 1h\]]:DURATION:_default' \
'--detach-on-stop[Remove the filter when the daemon stops (by default it stays attached) \[config\: daemon.detach_on_stop\]]' \
'--no-builtin[Leave the built-in list out \[config\: sources.builtin = false\]]' \
'--peer-ports[Also allow the port-only sets for any address (Delivery Optimization peering\: TCP 7680, UDP 3544) \[config\: policy.peer_ports\]]' \
'--no-service[Do not use the endpoint web service \[config\: sources.service = false\]]' \
'--no-ipv6[Ask for IPv4 prefixes only \[config\: sources.no_ipv6\]]' \
'--required-only[Keep only sets the service marks required \[config\: sources.required_only\]]' \
'--no-resolve[Do not resolve the listed names\: match the listed prefixes only \[config\: dns.enabled = false\]]' \
'--learn-from-dns[Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving through the filtered interfaces (reads device traffic\: off unless asked) \[config\: dns.learn_from_dns\]]' \
'--no-local[Filter the gateway'\''s own traffic, link-local multicast and broadcast like any other (by default they pass as \`local\`) \[config\: policy.allow_local = false\]]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(refresh)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(stats)
_arguments "${_arguments_options[@]}" : \
'--by=[]:BY:((prefix\:"Every rule with hits\: prefix or resolved address"
set\:"Per endpoint set (a rule'\''s hits count for each set that lists it)"
port\:"Per port that Intune traffic matched on (ports beyond the counters count as "other")"
outcome\:"The outcome counters only"))' \
'--watch=[Print again every SECONDS, with rates]:SECONDS:_default' \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'--json[]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(lookup)
_arguments "${_arguments_options[@]}" : \
'--port=[]:PORT:_default' \
'--proto=[]:PROTO:(tcp udp)' \
'--direction=[]:DIRECTION:((dst\:"ADDRESS is the destination\: a device talking to it"
src\:"ADDRESS is the source\: its answer coming back"))' \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'--json[]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':address:_default' \
&& ret=0
;;
(detach)
_arguments "${_arguments_options[@]}" : \
'*--iface=[Interface to detach from (repeatable; default\: every one)]:IF:_default' \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
':shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
'-h[Print help]' \
'--help[Print help]' \
'::file -- The config file to check:_files' \
&& ret=0
;;
(endpoints)
_arguments "${_arguments_options[@]}" : \
'--source=[]:SOURCE:((builtin\:""
service\:"Fetch once from the web service (version, then endpoints)"
file\:"The files given with --endpoints"
service-tags\:"The Azure service tags \`\[sources\] service_tags\` names, from its file (the tags the daemon took last, when the file is rejected) or downloaded once from its url"
effective\:"Built-in list, the service'\''s last accepted list (the cache; no request), files, less exclusions"))' \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'*--endpoints=[Extra endpoint sets, in the Microsoft 365 endpoint web service'\''s JSON schema, added to the built-in list (repeatable) \[config\: sources.files\]]:FILE:_files' \
'*--exclude=[A prefix or host name never to allow (repeatable) \[config\: sources.exclude\]]:PREFIX|NAME:_default' \
'--region=[The tenant'\''s region (its location in the Intune admin center)\: the built-in list'\''s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out \[config\: sources.region; default all\]]:REGION:((all\:"Every region'\''s endpoints"
na\:"North America"
eu\:"Europe"
ap\:"Asia Pacific"))' \
'*--skip-set=[An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple'\''s push service with all of 17.0.0.0/8) \[config\: sources.skip_sets\]]:ID:_default' \
'--service-url=[\[config\: sources.service_url\]]:URL:_default' \
'--instance=[\[config\: sources.instance; default Worldwide\]]:INSTANCE:(worldwide USGovDoD USGovGCCHigh china)' \
'*--service-area=[Service areas to ask for (repeatable) \[config\: sources.service_areas; default MEM, Common\]]:AREA:_default' \
'*--common-set=[Common sets to keep (repeatable) \[config\: sources.common_sets; default the article'\''s Intune dependencies\]]:ID:_default' \
'*--category=[Keep only sets of this category (repeatable)\: Optimize, Allow, Default \[config\: sources.categories\]]:CATEGORY:_default' \
'--refresh-interval=[Seconds between version checks; at least 3600 against the real service \[config\: sources.refresh_interval; default 1h\]]:SECONDS:_default' \
'--max-shrink=[Share of the service'\''s prefixes a new list may remove before it is rejected \[config\: sources.max_shrink; default 0.5\]]:SHARE:_default' \
'--service-timeout=[Seconds a request may take, and to wait for a connection (a third of it) \[config\: sources.service_timeout; default 30\]]:SECONDS:_default' \
'--no-builtin[Leave the built-in list out \[config\: sources.builtin = false\]]' \
'--peer-ports[Also allow the port-only sets for any address (Delivery Optimization peering\: TCP 7680, UDP 3544) \[config\: policy.peer_ports\]]' \
'--no-service[Do not use the endpoint web service \[config\: sources.service = false\]]' \
'--no-ipv6[Ask for IPv4 prefixes only \[config\: sources.no_ipv6\]]' \
'--required-only[Keep only sets the service marks required \[config\: sources.required_only\]]' \
'(--urls)--ips[The unique prefixes, one a line]' \
'--urls[The unique names, one a line]' \
'--json[]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'*--endpoints=[Extra endpoint sets, in the Microsoft 365 endpoint web service'\''s JSON schema, added to the built-in list (repeatable) \[config\: sources.files\]]:FILE:_files' \
'*--exclude=[A prefix or host name never to allow (repeatable) \[config\: sources.exclude\]]:PREFIX|NAME:_default' \
'--region=[The tenant'\''s region (its location in the Intune admin center)\: the built-in list'\''s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out \[config\: sources.region; default all\]]:REGION:((all\:"Every region'\''s endpoints"
na\:"North America"
eu\:"Europe"
ap\:"Asia Pacific"))' \
'*--skip-set=[An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple'\''s push service with all of 17.0.0.0/8) \[config\: sources.skip_sets\]]:ID:_default' \
'--service-url=[\[config\: sources.service_url\]]:URL:_default' \
'--instance=[\[config\: sources.instance; default Worldwide\]]:INSTANCE:(worldwide USGovDoD USGovGCCHigh china)' \
'*--service-area=[Service areas to ask for (repeatable) \[config\: sources.service_areas; default MEM, Common\]]:AREA:_default' \
'*--common-set=[Common sets to keep (repeatable) \[config\: sources.common_sets; default the article'\''s Intune dependencies\]]:ID:_default' \
'*--category=[Keep only sets of this category (repeatable)\: Optimize, Allow, Default \[config\: sources.categories\]]:CATEGORY:_default' \
'--refresh-interval=[Seconds between version checks; at least 3600 against the real service \[config\: sources.refresh_interval; default 1h\]]:SECONDS:_default' \
'--max-shrink=[Share of the service'\''s prefixes a new list may remove before it is rejected \[config\: sources.max_shrink; default 0.5\]]:SHARE:_default' \
'--service-timeout=[Seconds a request may take, and to wait for a connection (a third of it) \[config\: sources.service_timeout; default 30\]]:SECONDS:_default' \
'--no-builtin[Leave the built-in list out \[config\: sources.builtin = false\]]' \
'--peer-ports[Also allow the port-only sets for any address (Delivery Optimization peering\: TCP 7680, UDP 3544) \[config\: policy.peer_ports\]]' \
'--no-service[Do not use the endpoint web service \[config\: sources.service = false\]]' \
'--no-ipv6[Ask for IPv4 prefixes only \[config\: sources.no_ipv6\]]' \
'--required-only[Keep only sets the service marks required \[config\: sources.required_only\]]' \
'--json[]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(changes)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'--last=[How many of the newest changes to show]:N:_default' \
'--json[]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(resolve)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'*--endpoints=[Extra endpoint sets, in the Microsoft 365 endpoint web service'\''s JSON schema, added to the built-in list (repeatable) \[config\: sources.files\]]:FILE:_files' \
'*--exclude=[A prefix or host name never to allow (repeatable) \[config\: sources.exclude\]]:PREFIX|NAME:_default' \
'--region=[The tenant'\''s region (its location in the Intune admin center)\: the built-in list'\''s per-region names (Win32 and script CDNs, macOS sidecar, device health attestation, Remote Help) of the other regions are left out \[config\: sources.region; default all\]]:REGION:((all\:"Every region'\''s endpoints"
na\:"North America"
eu\:"Europe"
ap\:"Asia Pacific"))' \
'*--skip-set=[An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple'\''s push service with all of 17.0.0.0/8) \[config\: sources.skip_sets\]]:ID:_default' \
'--service-url=[\[config\: sources.service_url\]]:URL:_default' \
'--instance=[\[config\: sources.instance; default Worldwide\]]:INSTANCE:(worldwide USGovDoD USGovGCCHigh china)' \
'*--service-area=[Service areas to ask for (repeatable) \[config\: sources.service_areas; default MEM, Common\]]:AREA:_default' \
'*--common-set=[Common sets to keep (repeatable) \[config\: sources.common_sets; default the article'\''s Intune dependencies\]]:ID:_default' \
'*--category=[Keep only sets of this category (repeatable)\: Optimize, Allow, Default \[config\: sources.categories\]]:CATEGORY:_default' \
'--refresh-interval=[Seconds between version checks; at least 3600 against the real service \[config\: sources.refresh_interval; default 1h\]]:SECONDS:_default' \
'--max-shrink=[Share of the service'\''s prefixes a new list may remove before it is rejected \[config\: sources.max_shrink; default 0.5\]]:SHARE:_default' \
'--service-timeout=[Seconds a request may take, and to wait for a connection (a third of it) \[config\: sources.service_timeout; default 30\]]:SECONDS:_default' \
'*--resolver=[Resolver to look the listed names up with (repeatable; default\: the system'\''s, from /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS \[config\: dns.resolvers\]]:ADDR:PORT:_default' \
'--dns-min-ttl=[Shortest time between lookups of a name, whatever its TTL \[config\: dns.min_ttl; 30s\]]:DURATION:_default' \
'--dns-max-ttl=[Longest time between lookups of a name, whatever its TTL \[config\: dns.max_ttl; 1h\]]:DURATION:_default' \
'--dns-grace=[How long an address stays after the TTL of the last answer that held it \[config\: dns.grace; 10m\]]:DURATION:_default' \
'--dns-timeout=[How long one query waits for an answer \[config\: dns.timeout; 3s\]]:DURATION:_default' \
'--dns-rate=[Lookups started per second at most \[config\: dns.rate; 50\]]:N:_default' \
'*--learn-trusted=[Learn only from answers of this resolver (repeatable; default\: the --dns-resolver ones; learning needs one or the other) \[config\: dns.learn_trusted\]]:ADDR:_default' \
'--learn-max=[Learned addresses kept at most; the least recently seen goes first \[config\: dns.learn_max\]]:N:_default' \
'--no-builtin[Leave the built-in list out \[config\: sources.builtin = false\]]' \
'--peer-ports[Also allow the port-only sets for any address (Delivery Optimization peering\: TCP 7680, UDP 3544) \[config\: policy.peer_ports\]]' \
'--no-service[Do not use the endpoint web service \[config\: sources.service = false\]]' \
'--no-ipv6[Ask for IPv4 prefixes only \[config\: sources.no_ipv6\]]' \
'--required-only[Keep only sets the service marks required \[config\: sources.required_only\]]' \
'--no-resolve[Do not resolve the listed names\: match the listed prefixes only \[config\: dns.enabled = false\]]' \
'--learn-from-dns[Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving through the filtered interfaces (reads device traffic\: off unless asked) \[config\: dns.learn_from_dns\]]' \
'--json[]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
'*--set=[Only this endpoint set (repeat for more)]:ID:_default' \
'*--name=[Only this name (repeat for more); no listed prefix is checked then]:NAME:_default' \
'--config=[The config file (default\: /etc/intune-ctl/config.toml when it exists); flags given here override it]:FILE:_files' \
'--bpffs-dir=[Where the program, its maps and links are pinned \[config\: paths.bpffs_dir\]]:DIR:_files' \
'--state-dir=[The state directory\: recorded rules, caches, changes \[config\: paths.state_dir\]]:DIR:_files' \
'--control-socket=[The daemon'\''s control socket \[config\: paths.control_socket\]]:PATH:_files' \
'--connect[Also open a TCP connection from the gateway to one address of each name on port 443 (off by default\: it sends traffic)]' \
'--json[One JSON object per checked (set, name, address, port)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_intune-ctl__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:intune-ctl-help-command-$line[1]:"
        case $line[1] in
            (classify)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(daemon)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(refresh)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(stats)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(lookup)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(detach)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(endpoints)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(changes)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(resolve)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_intune-ctl_commands] )) ||
_intune-ctl_commands() {
    local commands; commands=(
'classify:Run every frame of a capture through the real program and print what it decided' \
'daemon:The filter daemon\: attach to the interfaces, keep the rule set current, print hit counters; reads /etc/intune-ctl/config.toml (or --config), flags override it' \
'run:The filter daemon\: attach to the interfaces, keep the rule set current, print hit counters; reads /etc/intune-ctl/config.toml (or --config), flags override it' \
'status:The daemon'\''s state\: interfaces, mode, rules per source, last refresh, resolver' \
'refresh:Ask the daemon to check the web service and look the names up again now' \
'stats:Hit counters of the running (or stopped) filter, from its pinned maps' \
'lookup:What the running filter does with a packet to (or from) ADDRESS, asked of the real program against the live maps' \
'detach:Remove the filter from interfaces (all by default) and its pins' \
'man:Print the man page (roff), for packaging' \
'completions:Print shell completions, for packaging' \
'check-config:Validate a config file, its endpoint files and exclusions, without touching anything' \
'endpoints:Print the endpoint sets of one source, or the effective list' \
'list:Print the effective rule set with each prefix'\''s ports, endpoint sets and sources' \
'changes:Print the last applied changes of the rule set' \
'resolve:Resolve every exact name of the rule set once and print the answers' \
'check:Would a device reach every endpoint through this gateway now? Resolves the names and asks the live filter about each address on each port; exit 1 when something required would be blocked' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'intune-ctl commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__changes_commands] )) ||
_intune-ctl__subcmd__changes_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl changes commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__check_commands] )) ||
_intune-ctl__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl check commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__check-config_commands] )) ||
_intune-ctl__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl check-config commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__classify_commands] )) ||
_intune-ctl__subcmd__classify_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl classify commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__completions_commands] )) ||
_intune-ctl__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl completions commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__daemon_commands] )) ||
_intune-ctl__subcmd__daemon_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl daemon commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__detach_commands] )) ||
_intune-ctl__subcmd__detach_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl detach commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__endpoints_commands] )) ||
_intune-ctl__subcmd__endpoints_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl endpoints commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help_commands] )) ||
_intune-ctl__subcmd__help_commands() {
    local commands; commands=(
'classify:Run every frame of a capture through the real program and print what it decided' \
'daemon:The filter daemon\: attach to the interfaces, keep the rule set current, print hit counters; reads /etc/intune-ctl/config.toml (or --config), flags override it' \
'status:The daemon'\''s state\: interfaces, mode, rules per source, last refresh, resolver' \
'refresh:Ask the daemon to check the web service and look the names up again now' \
'stats:Hit counters of the running (or stopped) filter, from its pinned maps' \
'lookup:What the running filter does with a packet to (or from) ADDRESS, asked of the real program against the live maps' \
'detach:Remove the filter from interfaces (all by default) and its pins' \
'man:Print the man page (roff), for packaging' \
'completions:Print shell completions, for packaging' \
'check-config:Validate a config file, its endpoint files and exclusions, without touching anything' \
'endpoints:Print the endpoint sets of one source, or the effective list' \
'list:Print the effective rule set with each prefix'\''s ports, endpoint sets and sources' \
'changes:Print the last applied changes of the rule set' \
'resolve:Resolve every exact name of the rule set once and print the answers' \
'check:Would a device reach every endpoint through this gateway now? Resolves the names and asks the live filter about each address on each port; exit 1 when something required would be blocked' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'intune-ctl help commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__changes_commands] )) ||
_intune-ctl__subcmd__help__subcmd__changes_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help changes commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__check_commands] )) ||
_intune-ctl__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help check commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__check-config_commands] )) ||
_intune-ctl__subcmd__help__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help check-config commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__classify_commands] )) ||
_intune-ctl__subcmd__help__subcmd__classify_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help classify commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__completions_commands] )) ||
_intune-ctl__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help completions commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__daemon_commands] )) ||
_intune-ctl__subcmd__help__subcmd__daemon_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help daemon commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__detach_commands] )) ||
_intune-ctl__subcmd__help__subcmd__detach_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help detach commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__endpoints_commands] )) ||
_intune-ctl__subcmd__help__subcmd__endpoints_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help endpoints commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__help_commands] )) ||
_intune-ctl__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help help commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__list_commands] )) ||
_intune-ctl__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help list commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__lookup_commands] )) ||
_intune-ctl__subcmd__help__subcmd__lookup_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help lookup commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__man_commands] )) ||
_intune-ctl__subcmd__help__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help man commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__refresh_commands] )) ||
_intune-ctl__subcmd__help__subcmd__refresh_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help refresh commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__resolve_commands] )) ||
_intune-ctl__subcmd__help__subcmd__resolve_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help resolve commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__stats_commands] )) ||
_intune-ctl__subcmd__help__subcmd__stats_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help stats commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__help__subcmd__status_commands] )) ||
_intune-ctl__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl help status commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__list_commands] )) ||
_intune-ctl__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl list commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__lookup_commands] )) ||
_intune-ctl__subcmd__lookup_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl lookup commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__man_commands] )) ||
_intune-ctl__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl man commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__refresh_commands] )) ||
_intune-ctl__subcmd__refresh_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl refresh commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__resolve_commands] )) ||
_intune-ctl__subcmd__resolve_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl resolve commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__stats_commands] )) ||
_intune-ctl__subcmd__stats_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl stats commands' commands "$@"
}
(( $+functions[_intune-ctl__subcmd__status_commands] )) ||
_intune-ctl__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'intune-ctl status commands' commands "$@"
}

if [ "$funcstack[1]" = "_intune-ctl" ]; then
    _intune-ctl "$@"
else
    compdef _intune-ctl intune-ctl
fi

"""MySQL 5.7/8 and MariaDB 10.4+ as source and target, over PyMySQL."""
